"""What a rule costs on clean data: the share of real pixels it would remove if the real images were filtered.

Real images hold no synthesis defect, so every real pixel a rule would remove is a clean label thrown away; the same
share of the synthetic set's clean pixels goes with them. Every run prints the line

    on the <split> real images (<name>) this rule would remove X% of labelled pixels (Y% of them within 2 px of a
    boundary)

before pass 2, and writes the counts to ``filter_stats.json`` ("diagnostic"). The split is the held-out one when
given: the model was trained on the training split, whose losses are lower than those of unseen images.

The counts are exact, never read off a bin: under the quantile rule every threshold is a histogram bin edge, so the
histograms count them (when the boundary band is 0 or the histograms' own 2 px); otherwise (the mean-margin rule,
whose thresholds come from pass 1's means, or another band) a pass over the split compares every pixel with its
threshold, as pass 2 does. That pass is one more forward over the split: on ADE20K's training set about 5% of a
20-seed filter run (20k of 420k images); over a held-out split it shares the forward that makes its histograms.
``--no-diagnostic`` skips it.
"""

from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Union

import numpy as np
import torch

from ...utils import comm
from ..loss_histograms import LossHistograms
from .boundary import batch_near_boundary
from .rule import noisy_pixels

_FIELDS = ("labelled", "labelled_near_boundary", "removed", "removed_near_boundary", "kept_by_band")


@dataclass(frozen=True)
class CleanCost:
    """int64 ``(K,)`` pixel counts per class on a real split under one rule: labelled pixels (and those near a
    boundary), pixels the rule would remove (and those near a boundary), pixels above their threshold that the
    boundary band keeps. ``split`` is "held-out" or "training"; ``dataset`` names it."""

    split: str
    dataset: str
    boundary_radius: int
    labelled: np.ndarray
    labelled_near_boundary: np.ndarray
    removed: np.ndarray
    removed_near_boundary: np.ndarray
    kept_by_band: np.ndarray

    def line(self) -> str:
        """The diagnostic line (percentages of the totals)."""
        pixels, removed = int(self.labelled.sum()), int(self.removed.sum())
        near = int(self.removed_near_boundary.sum())
        text = (
            f"on the {self.split} real images ({self.dataset}) this rule would remove {_percent(removed, pixels):.2f}% "
            f"of labelled pixels ({_percent(near, removed):.1f}% of them within {self.boundary_radius} px of a "
            f"boundary)"
        )
        kept = int(self.kept_by_band.sum())
        if kept:
            text += f"; the boundary band keeps another {_percent(kept, pixels):.2f}%"
        return text

    def to_json(self, class_names: Sequence[str]) -> Dict:
        """The ``diagnostic`` entry of ``filter_stats.json``."""
        totals = {name: int(getattr(self, name).sum()) for name in _FIELDS}
        return {
            "split": self.split,
            "dataset": self.dataset,
            "boundary_radius": self.boundary_radius,
            **totals,
            "fraction": _percent(totals["removed"], totals["labelled"]) / 100,
            "near_boundary_share": _percent(totals["removed_near_boundary"], totals["removed"]) / 100,
            "classes": [
                {"id": c, "name": name, **{f: int(getattr(self, f)[c]) for f in _FIELDS}}
                for c, name in enumerate(class_names)
            ],
        }


def _percent(part: int, whole: int) -> float:
    return 100 * part / whole if whole else 0.0


class CleanCostAccumulator:
    """Counts a :class:`CleanCost` batch by batch (the exact diagnostic pass), reducible across ranks."""

    def __init__(
        self, thresholds: torch.Tensor, band: int, radius: int, device: Union[str, torch.device] = "cpu"
    ) -> None:
        self.thresholds = thresholds
        self.band = band
        self.radius = radius
        self.num_classes = len(thresholds)
        self.counts = torch.zeros(len(_FIELDS), self.num_classes, dtype=torch.int64, device=device)

    def add(
        self, loss: torch.Tensor, labels: torch.Tensor, near: torch.Tensor, sizes: Sequence, ignore_label: int
    ) -> None:
        """A padded batch: ``loss``, ``labels`` and ``near`` (within ``radius`` px of a boundary) ``(N, H, W)``,
        image ``n`` covering ``sizes[n]`` = (h, w)."""
        keep = batch_near_boundary(labels, sizes, self.band) if self.band else None
        above = noisy_pixels(loss, labels, self.thresholds, ignore_label)
        removed = above if keep is None else above & ~keep
        valid = labels != ignore_label
        masks = (valid, valid & near, removed, removed & near, above & ~removed)
        for row, mask in enumerate(masks):
            classes = labels[mask].long().to(self.counts.device)
            self.counts[row] += torch.bincount(classes, minlength=self.num_classes)

    def all_reduce(self) -> None:
        comm.all_reduce_sum(self.counts)

    def result(self, split: str, dataset: str) -> CleanCost:
        return CleanCost(split, dataset, self.radius, *self.counts.cpu().numpy())


def cost_from_histograms(
    histograms: LossHistograms, thresholds: np.ndarray, band: int, split: str
) -> Optional[CleanCost]:
    """The exact :class:`CleanCost` of ``thresholds`` read off ``histograms``, or None when the histograms cannot
    tell it exactly: a finite threshold off the bin edges, or a band other than 0 and the histograms' radius."""
    upper = histograms.upper_edges()
    if band not in (0, histograms.boundary_radius):
        return None
    first_above = []
    for value in np.asarray(thresholds, dtype=np.float64):
        bin_index = np.flatnonzero(upper == value)
        if bin_index.size != 1:
            return None
        first_above.append(int(bin_index[0]) + 1)
    counts = histograms.counts  # (K, 2, bins): band 0 interior, 1 near a boundary
    above = np.array([counts[c, :, first:].sum(axis=1) for c, first in enumerate(first_above)]).reshape(-1, 2)
    interior, near = above[:, 0], above[:, 1]
    banded = band == histograms.boundary_radius
    return CleanCost(
        split,
        histograms.dataset,
        histograms.boundary_radius,
        counts.sum(axis=(1, 2)),
        counts[:, 1].sum(axis=1),
        interior if banded else interior + near,
        np.zeros_like(near) if banded else near,
        near if banded else np.zeros_like(near),
    )
