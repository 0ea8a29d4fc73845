"""Multi-scale deformable attention (Deformable DETR), the core of the Mask2Former pixel decoder.

Each query attends to ``P`` learned points on each of ``L`` feature levels per head, instead of to every pixel, so the
cost is linear in the number of pixels. The op has two layers:

* :func:`ms_deform_attn` — the function-level API ``(value, spatial_shapes, level_start_index, sampling_locations,
  attention_weights, level_shapes=None) -> output``. It is the single dispatch point: the compiled CUDA op
  (``ops/``, loaded and chosen by :mod:`.ms_deform_attn_cuda` on the first call with CUDA tensors, or any
  implementation plugged in with :func:`set_compiled_ms_deform_attn`) serves CUDA tensors; everything else runs
  :func:`ms_deform_attn_pytorch`.
  Nothing is imported or compiled here at import time.
* :class:`MSDeformAttn` — the module with the learned projections, whose parameter names match the official
  Mask2Former/Deformable DETR layout (``sampling_offsets``, ``attention_weights``, ``value_proj``, ``output_proj``) so
  converted checkpoints load without renaming inside the module.

Level sizes: the official signature carries them as tensors (``spatial_shapes`` (L, 2), ``level_start_index`` (L,)),
which converted checkpoints' callers and the compiled op's binding expect, but every implementation needs them as
Python ints (split sizes, loop bounds, launch parameters); reading a CUDA tensor back is a host sync that stalls the
launch queue (13 per pixel-decoder forward when read in every layer). A caller that knows the sizes as ints, as the
pixel decoder does from its feature shapes, passes them as ``level_shapes`` and no tensor value is read on the path;
without it the tensors are read once per call (the official behaviour).

Shape letters: N batch, S = sum over levels of H_l*W_l flattened values, Lq queries, M heads, D channels per head,
L levels, P points per level and head, C = M*D model channels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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


def _check_shapes(
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
    _check_shapes(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
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


def ms_deform_attn(
    value: Tensor,
    spatial_shapes: Tensor,
    level_start_index: Tensor,
    sampling_locations: Tensor,
    attention_weights: Tensor,
    *,
    level_shapes: LevelShapes | None = None,
) -> Tensor:
    """Dispatch point of multi-scale deformable attention; same arguments and result as :func:`ms_deform_attn_pytorch`.

    CUDA tensors go to the compiled op when it is available (see :mod:`.ms_deform_attn_cuda` for the choice, the
    ``FREEMASK_MSDA_IMPL`` / ``MODEL.MSDA_IMPL`` switch and the once-per-path log line); everything else (CPU, or no
    extension built) takes the PyTorch path, which is exact but materialises every sample. ``level_shapes`` (Python
    ints) spares both paths the read-back of ``spatial_shapes`` / ``level_start_index``.
    """
    from .ms_deform_attn_cuda import select_ms_deform_attn  # deferred: the loader imports this module

    compiled = select_ms_deform_attn(value.is_cuda)
    if compiled is not None:
        _check_shapes(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
        return compiled(
            value, spatial_shapes, level_start_index, sampling_locations, attention_weights, level_shapes=level_shapes
        )
    return ms_deform_attn_pytorch(
        value, spatial_shapes, level_start_index, sampling_locations, attention_weights, level_shapes=level_shapes
    )


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention module (Deformable DETR, as used in the Mask2Former pixel decoder).

    Each query predicts, per head, ``n_levels * n_points`` offsets around its reference point and as many attention
    weights (softmax over levels and points together), samples the projected values there and mixes the heads with
    ``output_proj``.
    """

    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4) -> None:
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"MSDeformAttn: d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.d_model, self.n_levels, self.n_heads, self.n_points = d_model, n_levels, n_heads, n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Deformable DETR initialisation.

        Offsets start at zero weight with a bias that puts head h's points on the ray at angle 2*pi*h/M, point p at
        (p+1) pixels along it (the direction scaled so its larger coordinate is 1), identical on every level: the
        heads initially look in M different directions at growing distances. Zero attention-weight parameters make
        the initial softmax uniform over levels and points.
        """
        nn.init.zeros_(self.sampling_offsets.weight)
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        directions = torch.stack([thetas.cos(), thetas.sin()], dim=-1)  # (M, 2) in (x, y)
        directions = directions / directions.abs().max(dim=-1, keepdim=True).values
        scale = torch.arange(1, self.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        grid = directions.view(self.n_heads, 1, 1, 2) * scale  # (M, 1, P, 2)
        grid = grid.expand(self.n_heads, self.n_levels, self.n_points, 2)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.reshape(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for proj in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(proj.weight)
            nn.init.zeros_(proj.bias)

    def forward(
        self,
        query: Tensor,
        reference_points: Tensor,
        input_flatten: Tensor,
        input_spatial_shapes: Tensor,
        input_level_start_index: Tensor,
        input_padding_mask: Tensor | None = None,
        level_shapes: LevelShapes | None = None,
    ) -> Tensor:
        """Attend from ``query`` to the multi-scale features ``input_flatten``.

        Args:
            query: (N, Lq, C), already including its positional embedding.
            reference_points: (N, Lq, L, 2) in (x, y), normalised to [0, 1] per level (valid-region aware).
            input_flatten: (N, S, C) all levels flattened and concatenated.
            input_spatial_shapes: (L, 2) integer (H_l, W_l).
            input_level_start_index: (L,).
            input_padding_mask: (N, S) bool, True at padded positions (their values are zeroed), or None.
            level_shapes: ``input_spatial_shapes`` as Python ints, if known: no tensor value is read (no host sync).

        Returns:
            (N, Lq, C).

        Offsets, attention weights and sampling locations run in float32 even under autocast: locations in bf16 are
        only accurate to ~1/256 of the map (a quarter pixel at 64 px) and bilinear corner weights in low precision
        degrade further. A bfloat16/float16 value (the value projection under autocast) is handed to the op as it is,
        sampled and accumulated in float32 and returned in its dtype (see :func:`sampling_dtype`); the value and
        output projections follow autocast. Mask2Former instead disables autocast around its whole pixel decoder,
        which the decoder's ``MODEL.SEM_SEG_HEAD.DEFORMABLE_FP32`` (default True) keeps.
        """
        n, num_queries, _ = query.shape
        _, num_values, _ = input_flatten.shape
        m, num_levels, p = self.n_heads, self.n_levels, self.n_points
        if input_spatial_shapes.shape[0] != num_levels:
            raise ValueError(
                f"MSDeformAttn: built for n_levels={num_levels} but got {input_spatial_shapes.shape[0]} spatial shapes"
            )
        if tuple(reference_points.shape) != (n, num_queries, num_levels, 2):
            raise ValueError(
                f"MSDeformAttn: reference_points must be (N, Lq, L, 2) = {(n, num_queries, num_levels, 2)}, "
                f"got {tuple(reference_points.shape)}"
            )
        value = self.value_proj(input_flatten)
        if input_padding_mask is not None:
            value = value.masked_fill(input_padding_mask[..., None], 0.0)
        value = value.view(n, num_values, m, self.d_model // m)

        compute_dtype = torch.promote_types(query.dtype, torch.float32)
        # A low-precision value stays low-precision: the op reads it with float32 locations (mixed precision).
        value_dtype = value.dtype if value.dtype in (torch.float16, torch.bfloat16) else compute_dtype
        with torch.autocast(device_type=query.device.type, enabled=False):
            q = query.to(compute_dtype)
            offsets = F.linear(
                q, self.sampling_offsets.weight.to(compute_dtype), self.sampling_offsets.bias.to(compute_dtype)
            )
            offsets = offsets.view(n, num_queries, m, num_levels, p, 2)
            logits = F.linear(
                q, self.attention_weights.weight.to(compute_dtype), self.attention_weights.bias.to(compute_dtype)
            )
            weights = logits.view(n, num_queries, m, num_levels * p).softmax(-1).view(n, num_queries, m, num_levels, p)
            # Offsets are in pixels of each level; (W, H) turns them into the normalised (x, y) of the locations.
            normalizer = input_spatial_shapes.flip(-1).to(compute_dtype)  # (L, 2) as (W, H)
            locations = (
                reference_points.to(compute_dtype)[:, :, None, :, None, :]
                + offsets / normalizer[None, None, None, :, None, :]
            )
            output = ms_deform_attn(
                value.to(value_dtype),
                input_spatial_shapes,
                input_level_start_index,
                locations,
                weights,
                level_shapes=level_shapes,
            )
        return self.output_proj(output.to(value.dtype))
