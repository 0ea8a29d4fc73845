"""Point sampling for Mask2Former's matcher and mask losses.

Mask2Former never compares whole masks: both the Hungarian costs and the mask losses are evaluated on a few thousand
points (12,544 in the published recipe) sampled in normalised image coordinates. Sampling in ``[0, 1]`` coordinates
lets a stride-4 prediction and a full-resolution target be compared at the same physical locations without resizing
either, and it keeps memory independent of the crop size. The loss points are biased towards uncertain pixels
(logits near 0, i.e. mask boundaries), where the supervision matters most.
"""

from typing import Callable

import torch
import torch.nn.functional as F


def point_sample(input: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinearly read ``input`` (N, C, H, W) at ``coords`` (N, P, 2) and return (N, C, P).

    ``coords`` are ``(x, y)`` in ``[0, 1]`` over the whole map, with the ``align_corners=False`` convention: pixel
    ``j`` covers ``[j / W, (j + 1) / W)`` and its value is exact at ``(j + 0.5) / W``. Outside the pixel centres'
    hull the map is zero-padded, like the reference implementation.
    """
    grid = (2.0 * coords - 1.0).unsqueeze(2).to(input.dtype)  # (N, P, 1, 2) in grid_sample's [-1, 1]
    return F.grid_sample(input, grid, mode="bilinear", padding_mode="zeros", align_corners=False).squeeze(3)


def calculate_uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """``-|logits|``: highest (closest to 0) where the sigmoid mask is least decided. Keeps the input's shape."""
    return -torch.abs(logits)


def get_uncertain_point_coords_with_randomness(
    logits: torch.Tensor,
    uncertainty_fn: Callable[[torch.Tensor], torch.Tensor],
    num_points: int,
    oversample_ratio: float,
    importance_sample_ratio: float,
) -> torch.Tensor:
    """Pick ``num_points`` coordinates per map of ``logits`` (N, 1, H, W), biased to uncertain places.

    Returns (N, num_points, 2).

    ``int(num_points * oversample_ratio)`` candidates are drawn uniformly, the
    ``int(importance_sample_ratio * num_points)`` most uncertain of them (by ``uncertainty_fn`` on the sampled logits,
    shape (N, 1, S) -> (N, 1, S)) are kept, and the rest of the budget is filled with fresh uniform points so that
    confident regions still receive some supervision. The candidates are the first random draw (``torch.rand``), so a
    seeded call is reproducible.
    """
    if oversample_ratio < 1.0:
        raise ValueError(f"oversample_ratio must be >= 1 (got {oversample_ratio}); it multiplies num_points")
    if not 0.0 <= importance_sample_ratio <= 1.0:
        raise ValueError(f"importance_sample_ratio must be in [0, 1] (got {importance_sample_ratio})")
    num_images = logits.shape[0]
    num_sampled = int(num_points * oversample_ratio)
    candidates = torch.rand(num_images, num_sampled, 2, device=logits.device)
    uncertainties = uncertainty_fn(point_sample(logits, candidates))[:, 0, :]  # (N, S)
    num_uncertain = int(importance_sample_ratio * num_points)
    num_random = num_points - num_uncertain
    top = torch.topk(uncertainties, k=num_uncertain, dim=1).indices  # (N, num_uncertain)
    coords = torch.gather(candidates, 1, top.unsqueeze(-1).expand(-1, -1, 2))
    if num_random > 0:
        coords = torch.cat([coords, torch.rand(num_images, num_random, 2, device=logits.device)], dim=1)
    return coords
