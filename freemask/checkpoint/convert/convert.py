"""Convert a released checkpoint file into this project's state-dict layout, with a report of everything not mapped.

The report is the point: a conversion that silently leaves weights behind gives a model that evaluates to nonsense,
so every source key no rule matched, every key a rule refused, and (once checked against a model) every model key
not filled or of another shape is listed, and :meth:`ConversionReport.problems` is empty only for a clean result.
"""

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ...utils.atomic import atomic_torch_save
from ..checkpointer import CheckpointError
from . import detectron2_mask2former, freeseg, mmseg_mask2former, mmseg_segformer, mmseg_segmenter, mmseg_semask
from .layout import Layout, choose_layout
from .reading import as_tensor, read_checkpoint
from .rules import apply_table

LAYOUTS: tuple[Layout, ...] = (
    detectron2_mask2former.LAYOUT,
    freeseg.LAYOUT,
    mmseg_mask2former.LAYOUT,
    mmseg_segformer.LAYOUT,
    mmseg_segmenter.LAYOUT,
    mmseg_semask.LAYOUT,
)


@dataclass
class ConversionReport:
    """Converted ``tensors`` (our names) and what did not convert cleanly."""

    source: str
    layout: str
    num_source_keys: int
    tensors: dict[str, torch.Tensor]
    dropped: dict[str, list[str]] = field(default_factory=dict)  # reason -> source keys
    filled: dict[str, list[str]] = field(default_factory=dict)  # reason -> our keys the release has no tensor for
    refused: dict[str, list[str]] = field(default_factory=dict)  # reason -> source keys
    unmatched: list[str] = field(default_factory=list)
    collisions: list[str] = field(default_factory=list)
    ignored_objects: list[str] = field(default_factory=list)  # non-weight globals set aside while reading
    checked_against_model: bool = False
    missing: list[str] = field(default_factory=list)  # model keys no source key filled
    unexpected: list[str] = field(default_factory=list)  # converted keys the model does not have
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    counters_added: list[str] = field(default_factory=list)  # BatchNorm step counters the file lacks, set to 0
    counters_removed: list[str] = field(default_factory=list)  # counters the model (e.g. FrozenBN) does not keep
    note: str = ""  # what the layout says about using the result

    def problems(self) -> list[str]:
        """One phrase per kind of leftover; empty when every tensor found its place."""
        counts = [
            (sum(len(v) for v in self.refused.values()), "source keys belong to parts our model does not have"),
            (len(self.unmatched), "source keys matched no rule"),
            (len(self.collisions), "pairs of source keys map onto one name"),
            (len(self.missing), "model keys were not filled"),
            (len(self.unexpected), "converted keys are not in the model"),
            (len(self.mismatched), "converted tensors have another shape than the model's"),
        ]
        return [f"{n} {what}" for n, what in counts if n]

    def summary(self) -> str:
        """Multi-line account listing every problem key (nothing is elided: these are the keys to fix)."""
        lines = [
            f"{self.source}: {self.layout} layout, {self.num_source_keys} source keys -> {len(self.tensors)} tensors"
        ]
        if self.ignored_objects:
            lines.append(f"  set aside non-weight objects of types: {', '.join(self.ignored_objects)}")
        for reason, keys in self.dropped.items():
            lines.append(f"  dropped {len(keys)} keys ({reason}), e.g. {keys[0]}")
        for reason, keys in self.filled.items():
            lines.append(f"  added {', '.join(keys)} ({reason})")
        if self.counters_added:
            lines.append(
                f"  added {len(self.counters_added)} BatchNorm num_batches_tracked counters (0; unused in eval)"
            )
        if self.counters_removed:
            lines.append(f"  removed {len(self.counters_removed)} num_batches_tracked counters the model does not keep")
        for reason, keys in self.refused.items():
            lines += [f"  refused ({reason}):"] + [f"    {k}" for k in keys]
        sections = [
            ("source keys matched by no rule", self.unmatched),
            ("source keys mapped onto the same name", self.collisions),
            ("model keys not filled", self.missing),
            ("converted keys the model does not have", self.unexpected),
            ("shape mismatches", [f"{k}: file {tuple(a)} vs model {tuple(b)}" for k, a, b in self.mismatched]),
        ]
        for title, items in sections:
            if items:
                lines += [f"  {title} ({len(items)}):"] + [f"    {item}" for item in items]
        if self.checked_against_model and not self.problems():
            lines.append("  every model key is filled with a tensor of the model's shape")
        return "\n".join(lines)


def convert_checkpoint(path: str, source_layout: str = "auto", layouts: Sequence[Layout] = LAYOUTS) -> ConversionReport:
    """Read ``path`` (without executing anything from it), recognise its layout and rename its weights.

    ``source_layout``: ``auto``, a family (``detectron2``, ``mmseg``) or a layout name. Raises CheckpointError for a
    file that cannot be read or recognised; leftovers are in the report, not raised.
    """
    content, ignored = read_checkpoint(path)
    layout = choose_layout(content, path, layouts, source_layout)
    weights = layout.weights(content) or {}
    state = {str(k): as_tensor(str(k), v, path) for k, v in weights.items()}
    try:
        mapped = apply_table(state, layout.table_for(list(state)))
    except ValueError as e:  # a tensor a rule cannot reshape: the file does not hold what its keys say
        raise CheckpointError(f"{path}: {e}") from None
    filled: dict[str, list[str]] = {}
    for fill in layout.fills:
        if fill.target not in mapped.tensors:
            mapped.tensors[fill.target] = fill.make()
            filled.setdefault(fill.reason, []).append(fill.target)
    return ConversionReport(
        source=path,
        layout=layout.name,
        num_source_keys=len(state),
        tensors=mapped.tensors,
        dropped=mapped.dropped,
        filled=filled,
        refused=mapped.refused,
        unmatched=mapped.unmatched,
        collisions=mapped.collisions,
        ignored_objects=ignored,
        note=layout.note,
    )


def save_converted(tensors: dict[str, torch.Tensor], path: str) -> None:
    """Write ``{"model": tensors}``, the format our Checkpointer reads with ``weights_only=True``, atomically."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    atomic_torch_save({"model": {k: v.contiguous() for k, v in tensors.items()}}, path)
