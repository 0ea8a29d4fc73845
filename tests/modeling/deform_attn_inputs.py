"""Random inputs of multi-scale deformable attention for the op tests (imported by conftest.py only)."""

from typing import Sequence, Tuple

import torch


def level_meta(shapes: Sequence[Tuple[int, int]]) -> Tuple[torch.Tensor, torch.Tensor, int]:
    """(spatial_shapes (L, 2), level_start_index (L,), total positions S) of levels of (H, W) ``shapes``."""
    spatial = torch.tensor(shapes, dtype=torch.int64)
    sizes = spatial.prod(1)
    starts = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
    return spatial, starts, int(sizes.sum())


def random_inputs(
    shapes: Sequence[Tuple[int, int]] = ((5, 7), (3, 4), (2, 2)),
    n: int = 2,
    lq: int = 3,
    m: int = 2,
    d: int = 3,
    p: int = 2,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> Tuple[torch.Tensor, ...]:
    """(value (N, S, M, D), spatial, starts, locations (N, Lq, M, L, P, 2), weights (N, Lq, M, L, P)) on the CPU."""
    g = torch.Generator().manual_seed(seed)
    spatial, starts, s = level_meta(shapes)
    value = torch.randn(n, s, m, d, generator=g, dtype=dtype)
    # Locations in [-0.3, 1.3] so some points and some bilinear corners fall outside the maps.
    loc = torch.rand(n, lq, m, len(shapes), p, 2, generator=g, dtype=dtype) * 1.6 - 0.3
    weights = torch.rand(n, lq, m, len(shapes), p, generator=g, dtype=dtype)
    return value, spatial, starts, loc, weights
