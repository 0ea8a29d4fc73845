"""What a checkpoint layout is, and how a file is recognised as one.

A layout module (``detectron2_mask2former.py``, ``mmseg_mask2former.py``, ...) defines one :class:`Layout`: where
the tensors sit in the file, a key prefix that only its files have, and its table. Supporting another release is
adding such a module and listing it in ``LAYOUTS`` (``convert.py``); nothing else changes.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..checkpointer import CheckpointError
from .rules import Entry

# A key only this project's own checkpoints have: such a file needs no conversion.
_OWN_LAYOUT_MARKER = "transformer_decoder.transformer_cross_attention_layers."


@dataclass(frozen=True)
class Variant:
    """Entries that take precedence over a layout's table in files holding a key that starts with ``marker``.

    For a part that a release builds in two ways under partly the same names: detectron2's DeepLab stem has a
    ``stem.conv1`` too, 3x3 instead of 7x7, followed by ``stem.conv2`` and ``stem.conv3``, so only the presence of
    ``stem.conv2`` tells where ``stem.conv1`` goes.
    """

    marker: str
    table: tuple[Entry, ...]


@dataclass(frozen=True)
class Fill:
    """A tensor of our model that the release has no counterpart of, written with the value ``make()`` gives.

    ``reason`` says why that value is right (e.g. a step counter the release's training did not keep).
    """

    target: str
    reason: str
    make: Callable[[], torch.Tensor]


@dataclass(frozen=True)
class Layout:
    """A family of released checkpoints that one table converts.

    ``name`` is what reports print and ``--from`` accepts, as does ``family`` (the codebase: ``detectron2``,
    ``mmseg``), which selects all of that codebase's layouts; ``weights_key`` is the entry holding the tensors
    (a file that is a bare ``{name: tensor}`` mapping is accepted as well); ``marker`` is a key prefix that tells this
    layout's files apart from other layouts of the same codebase. ``variants`` adapt the table to the parts a file
    holds (:class:`Variant`); ``fills`` add tensors the release never has (:class:`Fill`); ``note`` is printed after
    a conversion, for what the user should know about using the result.
    """

    name: str
    family: str
    description: str
    weights_key: str
    marker: str
    table: tuple[Entry, ...]
    variants: tuple[Variant, ...] = ()
    fills: tuple[Fill, ...] = ()
    note: str = ""

    def weights(self, content: Any) -> Mapping[str, Any] | None:
        """The ``{name: tensor or array}`` mapping of a file's content, or None when the file has none here."""
        if not isinstance(content, Mapping):
            return None
        inner = content.get(self.weights_key)
        if isinstance(inner, Mapping):
            return inner
        return content if content and all(isinstance(k, str) and "." in k for k in content) else None

    def table_for(self, keys: Sequence[str]) -> tuple[Entry, ...]:
        """The table for a file with these keys: the entries of the variants it has, then the layout's own."""
        present = [v for v in self.variants if any(k.startswith(v.marker) for k in keys)]
        return tuple(entry for variant in present for entry in variant.table) + self.table

    def matches(self, content: Any) -> bool:
        weights = self.weights(content)
        return weights is not None and any(str(k).startswith(self.marker) for k in weights)


def choose_layout(content: Any, path: str, layouts: Sequence[Layout], wanted: str = "auto") -> Layout:
    """The layout of ``content`` (from ``path``) among ``layouts``: ``wanted`` is ``auto``, a family or a name.

    A named layout or a family with a single layout is used even when its marker is absent (the user said so;
    whatever does not map is reported). Otherwise exactly one candidate must recognise the file.
    """
    candidates = [lay for lay in layouts if wanted in ("auto", lay.name, lay.family)]
    if not candidates:
        known = ", ".join(sorted({lay.family for lay in layouts} | {lay.name for lay in layouts}))
        raise CheckpointError(f"unknown source layout {wanted!r}; choose auto or one of: {known}")
    found = [lay for lay in candidates if lay.matches(content)]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise CheckpointError(
            f"{path}: matches several layouts ({', '.join(lay.name for lay in found)}); pass --from with one of them"
        )
    if wanted != "auto" and len(candidates) == 1 and candidates[0].weights(content) is not None:
        return candidates[0]
    raise CheckpointError(_unrecognised(content, path, candidates, wanted))


def _unrecognised(content: Any, path: str, candidates: Sequence[Layout], wanted: str) -> str:
    if not isinstance(content, Mapping):
        return f"{path}: holds a {type(content).__name__}, not a checkpoint dictionary"
    keys = [str(k) for k in content]
    for wrapper in ("model", "state_dict"):
        if isinstance(content.get(wrapper), Mapping):
            keys = [str(k) for k in content[wrapper]]
    if any(k.startswith(_OWN_LAYOUT_MARKER) for k in keys):
        return f"{path}: already in this project's layout; pass it as MODEL.WEIGHTS without converting"
    first = ", ".join(keys[:3]) or "none"
    known = "; ".join(f"{lay.name}: {lay.description}" for lay in candidates)
    if wanted != "auto":
        return f"{path}: does not look like --from {wanted} (first keys: {first}); expected {known}"
    return f"{path}: not a layout this tool knows (first keys: {first}); known: {known}"
