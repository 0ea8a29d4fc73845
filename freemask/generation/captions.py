"""Captions built as FreestyleNet builds them, with the CLIP token span of every class, for rectified attention.

FreestyleNet's caption is the names of the classes present in the layout, in ascending label order, joined by single
spaces ("wall floor ceiling"), taken from its own name tables (``data/freestylenet_names.json``), which differ from
the datasets' names in places ('ground', 'pedestal', 'pouf'). Each class owns the tokens of its name: CLIP's BPE
splits words independently, so the caption's tokens are the concatenation of the names' tokens and the span of a
class is known without searching (the tests check this against the tokenizer on the whole caption).

Our training labels map to FreestyleNet's ids by the table's ``first_id`` and, for COCO-Stuff, the COCO category id:
ADE20K label ``k`` is FreestyleNet id ``k + 1``; COCO-Stuff label ``k`` (our 171 contiguous classes) is FreestyleNet
id ``coco_id(k) - 1`` of its 182-id table (``meta/coco_stuff_171.json`` holds the COCO ids).

**Captions longer than CLIP's 75 usable tokens.** FreestyleNet writes the span columns past the end of the mask there
(its code has no guard), so the classes after the 75th token lose their constraint or the run fails. We handle it
deliberately: classes are kept by descending pixel area (ties: lower label first), each one if its tokens still fit
in the budget, so the largest regions keep their text; the kept classes then form the caption in ascending label
order as usual. The pixels of a dropped class attend only to the start, end and padding tokens, exactly as pixels of
an absent or ignored class do in FreestyleNet; the caller logs the dropped classes.
"""

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .errors import GenerationError

USABLE_TOKENS = 75  # CLIP's 77 positions minus the start and end tokens
FAMILIES = ("ade20k", "coco_stuff")


@functools.lru_cache(maxsize=None)
def _names_file() -> Dict[str, Any]:
    text = resources.files(__package__).joinpath("data", "freestylenet_names.json").read_text(encoding="utf-8")
    return json.loads(text)


def freestylenet_names(family: str) -> Tuple[str, ...]:
    """FreestyleNet's caption name of each of our training labels of ``family`` (150 for ADE20K, 171 for
    COCO-Stuff), in label order."""
    table = _names_file()[family]
    names, first = table["names"], table["first_id"]
    if family == "ade20k":
        return tuple(names[k + 1 - first] for k in range(150))
    from ..data.datasets.class_meta import read_meta_file

    return tuple(names[coco_id - 1 - first] for coco_id in read_meta_file("coco_stuff_171.json")["coco_ids"])


def dataset_family(dataset: str) -> Optional[str]:
    """``"ade20k"`` or ``"coco_stuff"`` for a family key or a registered dataset with that family's classes
    (ADE20K's 150 or COCO-Stuff's 171, e.g. ``ade20k_sem_seg_train``), else None."""
    if dataset in FAMILIES:
        return dataset
    from ..data.catalog import DatasetCatalog, MetadataCatalog
    from ..data.datasets.ade20k import ade20k_meta
    from ..data.datasets.coco_stuff import coco_stuff_meta

    if dataset not in DatasetCatalog:
        return None
    classes = MetadataCatalog.get(dataset).get("stuff_classes")
    if classes is None:
        return None
    for family, meta in (("ade20k", ade20k_meta), ("coco_stuff", coco_stuff_meta)):
        if tuple(classes) == meta()[0]:
            return family
    return None


@dataclass(frozen=True)
class ClassSpan:
    """Label ``label``'s name ``name`` occupies token positions ``start`` .. ``stop - 1`` (position 0 = start token)."""

    label: int
    name: str
    start: int
    stop: int


@dataclass(frozen=True)
class Caption:
    """A caption, its 77 token ids (start, names, end, padding), the class spans and the classes left out
    (over the token budget; empty unless the mask has very many classes)."""

    text: str
    input_ids: Tuple[int, ...]
    spans: Tuple[ClassSpan, ...]
    dropped: Tuple[int, ...]

    def token_labels(self) -> np.ndarray:
        """(77,) int64: the label whose pixels each token may see, -1 for the open start/end/padding tokens."""
        out = np.full(len(self.input_ids), -1, dtype=np.int64)
        for span in self.spans:
            out[span.start : span.stop] = span.label
        return out


class CaptionBuilder:
    """Builds the caption of a label map from one name per training label and a CLIP tokenizer."""

    def __init__(self, names: Sequence[str], tokenizer: Any, ignore_label: int = 255) -> None:
        self.names = tuple(names)
        self.ignore_label = ignore_label
        self.bos, self.eos = tokenizer.bos_token_id, tokenizer.eos_token_id
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos
        self.length = USABLE_TOKENS + 2
        # CLIP tokenises words independently, so each name's ids are computed once and concatenated.
        self._ids: List[Tuple[int, ...]] = [tuple(tokenizer(n, add_special_tokens=False).input_ids) for n in names]

    def present(self, labels: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(labels present, their pixel counts) in ascending label order, ignore excluded; GenerationError for a
        label that is neither a class nor ignore."""
        values, counts = np.unique(labels, return_counts=True)
        keep = values != self.ignore_label
        values, counts = values[keep], counts[keep]
        bad = values[(values < 0) | (values >= len(self.names))]
        if bad.size:
            raise GenerationError(
                f"label map holds label {int(bad[0])}, outside the {len(self.names)} classes (0..{len(self.names) - 1})"
                f" and not the ignore label {self.ignore_label}; pass the dataset the masks belong to"
            )
        return values, counts

    def _fit(self, values: np.ndarray, counts: np.ndarray) -> Tuple[List[int], List[int]]:
        need = sum(len(self._ids[v]) for v in values)
        if need <= USABLE_TOKENS:
            return [int(v) for v in values], []
        kept, budget = [], USABLE_TOKENS
        for i in sorted(range(len(values)), key=lambda i: (-int(counts[i]), int(values[i]))):
            cost = len(self._ids[values[i]])
            if cost <= budget:
                kept.append(int(values[i]))
                budget -= cost
        kept.sort()
        return kept, [int(v) for v in values if int(v) not in set(kept)]

    def __call__(self, labels: np.ndarray) -> Caption:
        return self._caption(*self._fit(*self.present(labels)))

    def empty(self) -> Caption:
        """The caption of no class (start, end, padding): the unconditional input of guidance, as FreestyleNet's
        ``""`` and diffusers' default negative prompt."""
        return self._caption([], [])

    def _caption(self, kept: Sequence[int], dropped: Sequence[int]) -> Caption:
        ids, spans = [self.bos], []
        for label in kept:
            spans.append(ClassSpan(label, self.names[label], len(ids), len(ids) + len(self._ids[label])))
            ids.extend(self._ids[label])
        ids.append(self.eos)
        ids.extend([self.pad] * (self.length - len(ids)))
        return Caption(" ".join(self.names[k] for k in kept), tuple(ids), tuple(spans), tuple(dropped))
