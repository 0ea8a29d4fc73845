"""The filtering rules: a synthetic pixel is noise when the real-trained model finds it much harder than real pixels
of the same class. Both rules set one threshold per class; a pixel labelled ``c`` is filtered (set to the ignore
label) when its cross-entropy is strictly greater than the threshold of ``c`` (equality keeps it, as in the release).

- ``mean-margin`` (FreeMask's, the default): ``margin * L_c``, ``L_c`` being the mean loss of class ``c`` over the
  real training images. Per-pixel losses are heavy-tailed, so this removes about a tenth of clean pixels whatever
  the margin; the diagnostic line of every run says how many.
- ``quantile``: the upper edge of the first histogram bin (:mod:`freemask.synthetic.loss_histograms`) at which at
  most ``clean_rate`` of the real pixels of ``c`` lie above it, so at most that share of the clean real pixels of
  each class is filtered (exactly, on the histogram's bins); the removed share of clean data is chosen, not
  incidental.

Two choices differ from the release, which set ``L_c = 0`` for a class with no real pixel and therefore filtered
every such pixel with a non-zero loss: here such a class has an infinite threshold under either rule and keeps all its
pixels (there is no evidence that they are noise), and already ignored pixels stay ignored whatever their loss. A
``keep`` map (``--boundary-band``) exempts more pixels.
"""

import math
from typing import Optional, Sequence

import numpy as np
import torch

from .options import check_clean_rate, check_tolerance_margin


def class_thresholds(mean_loss: Sequence[Optional[float]], margin: float) -> torch.Tensor:
    """Float64 ``(K,)`` thresholds ``margin * L_c``; ``+inf`` for classes without real pixels (None or NaN)."""
    check_tolerance_margin(margin)
    values = [math.inf if m is None or math.isnan(m) else margin * float(m) for m in mean_loss]
    return torch.tensor(values, dtype=torch.float64)


def quantile_thresholds(counts: np.ndarray, upper_edges: np.ndarray, clean_rate: float) -> torch.Tensor:
    """Float64 ``(K,)`` thresholds of the quantile rule from int ``(K, bins)`` histogram ``counts`` and each bin's
    upper edge (``(bins,)``, ``+inf`` last): for class ``c`` with ``N`` pixels, the upper edge of the first bin ``i``
    with at most ``clean_rate * N`` pixels in the bins above it; ``+inf`` for a class without pixels."""
    check_clean_rate(clean_rate)
    counts = np.asarray(counts, dtype=np.int64)
    above = counts.sum(axis=1, keepdims=True) - np.cumsum(counts, axis=1)  # pixels strictly above each bin
    values = []
    for c, total in enumerate(counts.sum(axis=1)):
        first = int(np.argmax(above[c] <= clean_rate * total))  # the last bin always qualifies (0 above)
        values.append(math.inf if total == 0 else float(upper_edges[first]))
    return torch.tensor(values, dtype=torch.float64)


def noisy_pixels(
    loss: torch.Tensor,
    labels: torch.Tensor,
    thresholds: torch.Tensor,
    ignore_label: int,
    keep: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Bool map (same shape as ``labels``) of the pixels to filter.

    ``loss``: per-pixel cross-entropy, any float dtype; ``labels``: integer training labels in ``0..K-1`` or
    ``ignore_label``; ``thresholds``: from :func:`class_thresholds` or :func:`quantile_thresholds`; ``keep``: bool,
    pixels never filtered (the boundary band). Compared in float64 so a float32 loss equal to the threshold is not
    filtered by a rounding of the threshold.
    """
    valid = labels != ignore_label
    index = torch.where(valid, labels, torch.zeros_like(labels)).long()
    limit = thresholds.to(loss.device)[index]
    noisy = valid & (loss.double() > limit)
    return noisy if keep is None else noisy & ~keep


def filled_value(reduce_zero_label: bool, ignore_label: int) -> int:
    """The value a filtered pixel gets in its mask's own encoding: 0 (unlabeled) in a raw ADE20K-style mask, whose
    labels are stored as ``class + 1``; the ignore label in a prepared mask."""
    return 0 if reduce_zero_label else ignore_label


def apply_filter(raw_mask: np.ndarray, noisy: np.ndarray, fill: int) -> np.ndarray:
    """A copy of ``raw_mask`` (as stored, any integer dtype) with the ``noisy`` pixels set to ``fill``."""
    if raw_mask.shape != noisy.shape:
        raise ValueError(f"mask {raw_mask.shape} and noisy map {noisy.shape} differ in shape")
    out = raw_mask.copy()
    out[noisy] = fill
    return out
