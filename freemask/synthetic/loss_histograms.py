"""Per-class histograms of a real-trained model's per-pixel loss on real images: the distribution, not only the mean.

The mean of a heavy-tailed loss says little about how many clean pixels a threshold removes; the histograms say it
exactly for any threshold on a bin edge, and give the calibrated (quantile) rule its thresholds. The filter writes
them in pass 1 beside ``class_loss.json`` (``class_loss_histograms.json``, the real training split) and, when a
held-out real split is given, ``heldout_loss_histograms.json`` beside the filter's output.

Bins are fixed (the same for every run), so counts from several ranks add up exactly and the file is byte-identical
for any number of processes. With ``edges`` ``e_0 < ... < e_B`` (``BINS + 1`` values, log-spaced from ``LOW`` to
``HIGH`` nats) bin 0 holds ``loss <= e_0`` (0 included), bin ``i`` (1..B) holds ``e_{i-1} < loss <= e_i`` and bin
``B + 1`` holds ``loss > e_B``. Bins are closed on the right because the rule keeps a pixel whose loss equals its
threshold: with a threshold ``e_i``, "filtered" is exactly "in a bin above ``i``".

Each class has two histograms: pixels within ``BOUNDARY_RADIUS`` px (Chebyshev) of another value of the mask
(``boundary``) and the others (``interior``), so the boundary share of any rule's removals is known. Format (UTF-8
JSON on one line)::

    {"format": "freemask.loss_histograms/1", "dataset": "<name or folders>", "ignore_label": 255,
     "boundary_radius": 2, "edges": [e_0, ..., e_B],
     "classes": [{"id": 0, "name": "wall", "interior": [B + 2 counts], "boundary": [B + 2 counts]}, ...]}

Torch-free, like :mod:`.class_loss`; the filter accumulates the counts in :mod:`freemask.synthetic.filter.loss`.
"""

import json
import math
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import UserError
from ..utils.atomic import atomic_write_text
from .class_loss import read_tagged_json, sorted_classes

FORMAT = "freemask.loss_histograms/1"
LOW, HIGH, BINS = 1e-6, 100.0, 400  # nats; 400 bins: each upper edge is 4.7% above the lower one
BOUNDARY_RADIUS = 2  # "near a boundary" of the reports, in pixels (Chebyshev), as freemask/toy/defect_score.py
TRAINING_NAME = "class_loss_histograms.json"
HELDOUT_NAME = "heldout_loss_histograms.json"


class LossHistogramError(UserError, ValueError):
    """A histogram file that cannot be used; the message names the file and the fix."""


def default_edges() -> np.ndarray:
    """Float64 ``(BINS + 1,)`` log-spaced bin edges from ``LOW`` to ``HIGH``."""
    return np.exp(np.linspace(math.log(LOW), math.log(HIGH), BINS + 1))


def histograms_path(class_loss_path: str) -> str:
    """Where the training-split histograms of a ``class_loss.json`` lie: beside it, ``<stem>_histograms.json``."""
    stem = os.path.splitext(class_loss_path)[0]
    return f"{stem}_histograms.json"


@dataclass(frozen=True)
class LossHistograms:
    """``counts[c, b, i]``: pixels of class ``c`` in loss bin ``i``, ``b`` = 1 within ``boundary_radius`` px of a
    boundary, 0 elsewhere. int64 ``(K, 2, len(edges) + 1)``."""

    dataset: str
    ignore_label: int
    names: Sequence[str]
    edges: np.ndarray
    counts: np.ndarray
    boundary_radius: int = BOUNDARY_RADIUS

    def __post_init__(self) -> None:
        expected = (len(self.names), 2, len(self.edges) + 1)
        if self.counts.shape != expected:
            raise ValueError(f"histogram counts {self.counts.shape}, expected {expected}")

    def per_class(self) -> np.ndarray:
        """int64 ``(K, len(edges) + 1)``: both bands together."""
        return self.counts.sum(axis=1)

    def upper_edges(self) -> np.ndarray:
        """Float64 upper edge of every bin (``+inf`` for the last)."""
        return np.append(self.edges, math.inf)


def write_loss_histograms(path: str, histograms: LossHistograms) -> None:
    """Write ``histograms`` to ``path`` atomically, compact (a few hundred kB for 150 classes)."""
    data = {
        "format": FORMAT,
        "dataset": histograms.dataset,
        "ignore_label": histograms.ignore_label,
        "boundary_radius": histograms.boundary_radius,
        "edges": [float(e) for e in histograms.edges],
        "classes": [
            {"id": c, "name": name, "interior": counts[0].tolist(), "boundary": counts[1].tolist()}
            for c, (name, counts) in enumerate(zip(histograms.names, histograms.counts))
        ],
    }
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_text(path, json.dumps(data, separators=(",", ":")))


def read_loss_histograms(path: str, num_classes: int, fix: str) -> LossHistograms:
    """Read a file written by :func:`write_loss_histograms` for a model of ``num_classes``; ``fix`` ends every
    error message (how to re-create the file)."""
    data = read_tagged_json(path, FORMAT, "loss histogram", fix, LossHistogramError)
    try:
        classes = sorted_classes(data)
        edges = np.array(data["edges"], dtype=np.float64)
        if edges.ndim != 1 or edges.size < 1 or not np.all(np.diff(edges) > 0):
            raise ValueError("edges must increase")
        counts = np.array([[c["interior"], c["boundary"]] for c in classes], dtype=np.int64)
        if counts.shape != (len(classes), 2, edges.size + 1) or (counts < 0).any():
            raise ValueError(f"every class needs {edges.size + 1} non-negative counts per band")
        histograms = LossHistograms(
            str(data["dataset"]),
            int(data["ignore_label"]),
            [str(c["name"]) for c in classes],
            edges,
            counts,
            int(data["boundary_radius"]),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise LossHistogramError(f"{path}: malformed histograms ({e}); {fix}") from None
    if len(histograms.names) != num_classes:
        raise LossHistogramError(
            f"{path} has {len(histograms.names)} classes but the model has {num_classes}; use the histograms "
            f"computed for this dataset"
        )
    return histograms
