"""Multi-scale deformable attention (Deformable DETR), the core of the Mask2Former pixel decoder.

Each query attends to ``P`` learned points on each of ``L`` feature levels per head, instead of to every pixel, so the
cost is linear in the number of pixels. The op has two layers:

* :func:`ms_deform_attn` — the function-level API ``(value, spatial_shapes, level_start_index, sampling_locations,
  attention_weights, level_shapes=None) -> output``. It is the single dispatch point: the compiled CUDA op
  (``ops/``, loaded and chosen by :mod:`.ms_deform_attn_cuda` on the first call with CUDA tensors, or any
  implementation plugged in with :func:`set_compiled_ms_deform_attn`) serves CUDA tensors; everything else runs
  :func:`ms_deform_attn_pytorch`.
  The extension is neither imported nor compiled at import time. The PyTorch path, the shared signature and the
  compiled slot live in :mod:`.deform_attn_pytorch`, which the loader imports too.
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

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .deform_attn_pytorch import (
    LevelShapes,
    check_shapes,
    ms_deform_attn_pytorch,
)
from .ms_deform_attn_cuda import select_ms_deform_attn


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
    compiled = select_ms_deform_attn(value.is_cuda)
    if compiled is not None:
        check_shapes(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
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
