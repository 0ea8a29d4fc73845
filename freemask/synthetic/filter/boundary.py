"""Which pixels lie near a class boundary of their mask, on the device, batch by batch.

"Near" is the definition of the toy defect scoring (:func:`freemask.toy.defect_score.near_boundary`): another value
of the mask, the ignore label included, within ``radius`` pixels (Chebyshev distance), the image border not being a
boundary. It serves two ends: the reports split the removed pixels into boundary and interior ones, and
``--boundary-band k`` keeps the pixels within ``k`` px from being filtered. The batch is padded to its largest image,
so each image is measured on its own extent and padding never counts as another value.
"""

from typing import Sequence, Tuple

import torch
import torch.nn.functional as F


def near_boundary(labels: torch.Tensor, radius: int) -> torch.Tensor:
    """Bool ``(H, W)``: another value of ``labels`` (``(H, W)`` integers) lies within ``radius`` px; all False for
    ``radius`` 0. Max-pooling pads with -inf, so the image border is neutral for the maximum and the minimum."""
    if radius <= 0:
        return torch.zeros_like(labels, dtype=torch.bool)
    values = labels.to(torch.float32)[None, None]  # exact for labels below 2**24
    size = 2 * radius + 1
    high = F.max_pool2d(values, size, stride=1, padding=radius)
    low = -F.max_pool2d(-values, size, stride=1, padding=radius)
    return (high != low)[0, 0]


def batch_near_boundary(labels: torch.Tensor, sizes: Sequence[Tuple[int, int]], radius: int) -> torch.Tensor:
    """Bool ``(N, H, W)`` for a padded batch ``labels`` whose image ``n`` covers ``sizes[n]`` = (h, w) at the top
    left; False in the padding."""
    near = torch.zeros_like(labels, dtype=torch.bool)
    if radius > 0:
        for n, (h, w) in enumerate(sizes):
            near[n, :h, :w] = near_boundary(labels[n, :h, :w], radius)
    return near
