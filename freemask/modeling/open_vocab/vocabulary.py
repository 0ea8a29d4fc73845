"""The classes an open-vocabulary model segments, named at run time rather than fixed by its weights.

FreeSeg's model has no class-count-sized layer: its class head scores queries against CLIP text features of whatever
names it is given. Training names only the seen classes (the ``_base`` splits' metadata); a test set names all its
classes, each flagged seen or unseen (``trainable_flag``, which selects the CLIP ensemble's exponent), and thing or
stuff (the panoptic / instance post-processing); a demo user types the names.

Without a ``trainable_flag`` every class is unseen, as in bytedance/FreeSeg, mask2former/open_vocabulary_model.py,
``OpenVocabulary.semantic_inference`` (its ``trained_mask`` is zeros when the test set's metadata has no flag, and for
the names of its ``text_labels``): the ensemble then leans on CLIP for every class. ``seen_source`` says where the
flags came from, for the model's log line.
"""

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Tuple

from ...errors import UserError


class VocabularyError(UserError):
    """A vocabulary that names no class, repeats a name, or whose flags do not match its names."""


@dataclass(frozen=True)
class Vocabulary:
    """Class names in contiguous-id order, with per-class seen (trained on) and thing (countable) flags."""

    names: Tuple[str, ...]
    seen: Tuple[bool, ...]
    thing: Tuple[bool, ...]
    seen_source: str = field(default="given by the caller", compare=False)

    def __post_init__(self) -> None:
        if not self.names:
            raise VocabularyError("the vocabulary names no class; give at least one class name")
        if len(set(self.names)) != len(self.names):
            repeated = sorted({n for n in self.names if self.names.count(n) > 1})
            raise VocabularyError(f"the vocabulary repeats {repeated}; each class name must appear once")
        if not (len(self.seen) == len(self.thing) == len(self.names)):
            raise VocabularyError(
                f"{len(self.names)} class names but {len(self.seen)} seen flags and {len(self.thing)} thing flags"
            )

    @classmethod
    def from_names(
        cls, names: Sequence[str], seen: Optional[Sequence[bool]] = None, thing: Optional[Sequence[bool]] = None
    ) -> "Vocabulary":
        """Names typed by a user: every class unseen (the ensemble trusts CLIP more) and a thing unless told."""
        names = tuple(n.strip() for n in names if n.strip())
        return cls(
            names,
            tuple(bool(s) for s in seen) if seen is not None else (False,) * len(names),
            tuple(bool(t) for t in thing) if thing is not None else (True,) * len(names),
            "given with the names" if seen is not None else "typed names: every class unseen, as FreeSeg",
        )

    @classmethod
    def from_metadata(cls, metadata: Any) -> "Vocabulary":
        """A registered split's vocabulary: ``stuff_classes`` (all class names, detectron2's convention),
        ``trainable_flag`` (1 = seen; absent = all unseen, FreeSeg's rule) and ``thing_classes``."""
        names = tuple(metadata.stuff_classes)
        flags = metadata.get("trainable_flag", None)
        split = metadata.get("name") or "the split"
        if flags is not None:
            seen, source = tuple(bool(f) for f in flags), f"the trainable_flag of {split}"
        else:
            seen, source = (False,) * len(names), f"{split} has no trainable_flag: every class unseen, as FreeSeg"
        things = set(metadata.get("thing_classes", ()) or ())
        return cls(names, seen, tuple(n in things for n in names), source)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def thing_ids(self) -> Tuple[int, ...]:
        """Contiguous ids of the thing classes (what panoptic ``isthing`` and instance output use)."""
        return tuple(i for i, t in enumerate(self.thing) if t)
