"""Multi-scale deformable attention's PyTorch path and what every implementation shares: the signature
(:data:`MSDeformAttnFn`), the level-size helpers, the input checks and the slot of the compiled implementation.

Split from :mod:`.deform_attn` (the dispatch and the module) so that the compiled op's loader
(:mod:`.ms_deform_attn_cuda`) and the dispatch both import it and neither imports the other's importer: the three
files form no import loop. Shape letters as in :mod:`.deform_attn`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from ...errors import UserError

LevelShapes = Sequence[tuple[int, int]]


class MSDeformAttnFn(Protocol):
    """An implementation: :func:`ms_deform_attn_pytorch`'s arguments, ``level_shapes`` by keyword, and result."""

    def __call__(
        self,
        value: Tensor,
        spatial_shapes: Tensor,
        level_start_index: Tensor,
        sampling_locations: Tensor,
        attention_weights: Tensor,
        *,
        level_shapes: LevelShapes | None = None,
    ) -> Tensor: ...


# The compiled implementation, set by the extension's loader (ms_deform_attn_cuda.py); None until one is loaded.
_COMPILED_IMPL: MSDeformAttnFn | None = None


def set_compiled_ms_deform_attn(fn: MSDeformAttnFn | None) -> MSDeformAttnFn | None:
    """Install ``fn`` (same signature and semantics as :func:`ms_deform_attn_pytorch`) for CUDA tensors.

    The compiled op's loader calls this once it has imported the extension, so the choice is explicit and lazy rather
    than an import-time ``try/except``. ``None`` restores the PyTorch path. Returns the previous implementation so
    a caller (or a test) can restore it.
    """
    global _COMPILED_IMPL
    previous, _COMPILED_IMPL = _COMPILED_IMPL, fn
    return previous


def compiled_ms_deform_attn() -> MSDeformAttnFn | None:
    """The implementation installed with :func:`set_compiled_ms_deform_attn`, or None."""
    return _COMPILED_IMPL


class UnsupportedDtypeError(UserError, TypeError):
    """An input dtype no implementation reads (float8, integers); the message names the argument and the cast."""


def sampling_dtype(value: Tensor, sampling_locations: Tensor, attention_weights: Tensor) -> torch.dtype:
    """The dtype the bilinear sampling and the sums run in: the widest of the three inputs.

    The mixed-precision case is a bfloat16/float16 ``value`` with float32 locations and weights (what the pixel
    decoder passes under autocast with ``MODEL.SEM_SEG_HEAD.DEFORMABLE_FP32 False``): it is sampled and accumulated
    in float32 and returned in the value's dtype, so the locations keep their sub-pixel accuracy while the value, the
    largest tensor, moves at half the bytes. float8 would need per-tensor scales the op does not take, so it is
    refused here rather than failing inside grid_sample or a kernel with a message that names neither.
    """
    named = (("value", value), ("sampling_locations", sampling_locations), ("attention_weights", attention_weights))
    for name, t in named:
        if not t.is_floating_point() or t.element_size() == 1:
            fix = "torch.bfloat16 (or keep float32)" if name == "value" else "torch.float32"
            raise UnsupportedDtypeError(
                f"ms_deform_attn: {name} is {t.dtype}, which the op does not read (float32, float16, bfloat16 or "
                f"float64 only; float8 is not supported); cast it with .to({fix})"
            )
    return torch.promote_types(value.dtype, torch.promote_types(sampling_locations.dtype, attention_weights.dtype))


def check_shapes(
    value: Tensor,
    spatial_shapes: Tensor,
    level_start_index: Tensor,
    sampling_locations: Tensor,
    attention_weights: Tensor,
) -> None:
    """Metadata-only checks (no device sync), shared by every implementation."""
    if value.dim() != 4:
        raise ValueError(f"ms_deform_attn: value must be (N, S, M, D), got shape {tuple(value.shape)}")
    n, _, m, _ = value.shape
    if spatial_shapes.dim() != 2 or spatial_shapes.shape[1] != 2 or spatial_shapes.is_floating_point():
        raise ValueError(
            f"ms_deform_attn: spatial_shapes must be an integer (L, 2) tensor of (H, W), got "
            f"{spatial_shapes.dtype} {tuple(spatial_shapes.shape)}"
        )
    num_levels = spatial_shapes.shape[0]
    if tuple(level_start_index.shape) != (num_levels,):
        raise ValueError(
            f"ms_deform_attn: level_start_index must be ({num_levels},) like spatial_shapes, "
            f"got {tuple(level_start_index.shape)}"
        )
    loc = sampling_locations
    if loc.dim() != 6 or loc.shape[0] != n or loc.shape[2] != m or loc.shape[3] != num_levels or loc.shape[5] != 2:
        raise ValueError(
            f"ms_deform_attn: sampling_locations must be (N={n}, Lq, M={m}, L={num_levels}, P, 2), "
            f"got {tuple(loc.shape)}"
        )
    if tuple(attention_weights.shape) != tuple(loc.shape[:5]):
        raise ValueError(
            f"ms_deform_attn: attention_weights must be (N, Lq, M, L, P) = {tuple(loc.shape[:5])} to match "
            f"sampling_locations, got {tuple(attention_weights.shape)}"
        )


def level_shapes_of(
    spatial_shapes: Tensor, level_start_index: Tensor, num_values: int, level_shapes: LevelShapes | None = None
) -> list[tuple[int, int]]:
    """Host-side (H, W) per level, checked against the value length and the level offsets.

    With ``level_shapes`` (Python ints describing the same levels as the tensors, as the caller built both) only
    they are checked and no tensor value is read. Without it the tensors are read back: one host sync each when they
    live on the GPU, the price of the official tensor-only signature. An empty level would make ``grid_sample`` fail
    deep inside with an unhelpful message and would give the CUDA op an out-of-range read, so it is rejected here
    with the offending level named.
    """
    if level_shapes is None:
        # The only device reads on the path, and only for callers that pass the tensors alone.
        shapes = [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
        starts_given = level_start_index.tolist()
    else:
        shapes = [(int(h), int(w)) for h, w in level_shapes]
        if len(shapes) != spatial_shapes.shape[0]:
            raise ValueError(
                f"ms_deform_attn: level_shapes {shapes} name {len(shapes)} levels but spatial_shapes has "
                f"{spatial_shapes.shape[0]}; build both from the same feature sizes"
            )
        starts_given = None
    for level, (h, w) in enumerate(shapes):
        if h <= 0 or w <= 0:
            raise ValueError(
                f"ms_deform_attn: level {level} is empty (H, W) = ({h}, {w}); drop it or use a smaller input stride"
            )
    sizes = [h * w for h, w in shapes]
    if sum(sizes) != num_values:
        raise ValueError(
            f"ms_deform_attn: value has S={num_values} positions but spatial_shapes {shapes} sum to {sum(sizes)}"
        )
    starts = level_starts(shapes)
    if starts_given is not None and starts_given != starts:
        raise ValueError(
            f"ms_deform_attn: level_start_index {starts_given} does not match spatial_shapes (expected {starts})"
        )
    return shapes


def level_starts(level_shapes: LevelShapes) -> list[int]:
    """Offset of each level in the flattened sequence: the exclusive cumulative sum of H_l * W_l."""
    starts, total = [], 0
    for h, w in level_shapes:
        starts.append(total)
        total += h * w
    return starts


def level_tensors(level_shapes: LevelShapes, device: torch.device) -> tuple[Tensor, Tensor]:
    """``(spatial_shapes, level_start_index)`` of the official signature, built on the host from Python ints.

    ``spatial_shapes`` goes to ``device`` (``MSDeformAttn`` turns it into the offset normaliser there) by a
    non-blocking copy: the source is a fresh pageable host tensor, so the copy is staged at once and the host does not
    wait for the stream. ``level_start_index`` stays on the CPU: no kernel reads it (the compiled op gets the starts
    as launch parameters, the PyTorch path splits by size).
    """
    spatial_shapes = torch.tensor(list(level_shapes), dtype=torch.long).to(device, non_blocking=True)
    return spatial_shapes, torch.tensor(level_starts(level_shapes), dtype=torch.long)


def ms_deform_attn_pytorch(
    value: Tensor,
    spatial_shapes: Tensor,
    level_start_index: Tensor,
    sampling_locations: Tensor,
    attention_weights: Tensor,
    *,
    level_shapes: LevelShapes | None = None,
) -> Tensor:
    """Reference multi-scale deformable attention: bilinear samples weighted and summed over levels and points.

    Args:
        value: (N, S, M, D) per-head values of all levels, flattened row-major per level and concatenated.
        spatial_shapes: (L, 2) integer (H_l, W_l) of each level.
        level_start_index: (L,) offset of each level in S (the exclusive cumulative sum of H_l*W_l).
        sampling_locations: (N, Lq, M, L, P, 2) in (x, y) order, normalised so that 0 and 1 are the outer edges of
            the feature map (pixel centres at (i + 0.5) / W); values outside [0, 1] are allowed.
        attention_weights: (N, Lq, M, L, P), usually softmax-normalised over (L, P) per head.
        level_shapes: the (H_l, W_l) of ``spatial_shapes`` as Python ints, when the caller has them: then no tensor
            value is read (no host sync); see :func:`level_shapes_of`.

    Returns:
        (N, Lq, M*D) in the value's dtype, computed in the widest input dtype (see :func:`sampling_dtype`).

    Bilinear sampling uses ``F.grid_sample`` with ``grid = 2*loc - 1``, ``align_corners=False`` and zero padding —
    the reference kernel's convention, so a corner outside the map contributes zero rather than a clamped border
    value; matching it is what lets official weights give official predictions.
    """
    check_shapes(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    compute = sampling_dtype(value, sampling_locations, attention_weights)
    n, num_values, m, d = value.shape
    num_queries = sampling_locations.shape[1]
    shapes = level_shapes_of(spatial_shapes, level_start_index, num_values, level_shapes)
    values = value.split([h * w for h, w in shapes], dim=1)
    grids = 2 * sampling_locations.to(compute) - 1
    output = value.new_zeros(n * m, d, num_queries, dtype=compute)
    # The dtypes are chosen above, not by an enclosing autocast (which would run the einsum in bfloat16).
    with torch.autocast(device_type=value.device.type, enabled=False):
        for level, (h, w) in enumerate(shapes):
            # (N, H*W, M, D) -> (N*M, D, H, W): one image per (batch, head) so grid_sample samples all heads at once.
            level_value = values[level].flatten(2).transpose(1, 2).reshape(n * m, d, h, w).to(compute)
            # (N, Lq, M, P, 2) -> (N*M, Lq, P, 2)
            level_grid = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
            sampled = F.grid_sample(level_value, level_grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            # sampled (N*M, D, Lq, P) weighted by (N*M, Lq, P); one level's samples alive at a time.
            weights = attention_weights[:, :, :, level].transpose(1, 2).flatten(0, 1).to(compute)
            output = output + torch.einsum("bdqp,bqp->bdq", sampled, weights)
    return output.view(n, m * d, num_queries).transpose(1, 2).to(value.dtype).contiguous()
