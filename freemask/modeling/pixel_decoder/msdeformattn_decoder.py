"""Mask2Former's pixel decoder: a deformable-attention encoder over strides 8/16/32, then an FPN step to stride 4.

Why this shape: per-pixel mask embeddings need fine resolution (stride 4), while context needs long range; full
self-attention at stride 8 is too costly, so each pixel attends to a few sampled points per level (MSDeformAttn) and
only the stride-4 level is reached with a cheap lateral + upsample. Parameter names follow the official
implementation (``input_proj``, ``transformer.level_embed``, ``transformer.encoder.layers.{i}.*``, ``adapter_1``,
``layer_1``, ``mask_features``) so released checkpoints map onto this module key for key.
"""

from collections.abc import Sequence
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..backbone.base import ShapeSpec
from ..layers import get_norm
from ..ops import MSDeformAttn
from ..ops.deform_attn_pytorch import level_tensors
from ..registry import PIXEL_DECODER_REGISTRY
from .position_encoding import PositionEmbeddingSine

__all__ = ["MSDeformAttnEncoder", "MSDeformAttnEncoderLayer", "MSDeformAttnPixelDecoder", "encoder_reference_points"]


def encoder_reference_points(
    spatial_shapes: Sequence[tuple[int, int]], batch: int, num_levels: int, device: torch.device
) -> Tensor:
    """Pixel centres of every level, normalised to (0, 1): ``(N, S, L, 2)`` in (x, y), S = sum of H_l * W_l.

    Every query of the flattened sequence looks at the same normalised point on all L levels, which is how a pixel of
    the stride-8 map finds its counterpart at stride 32. The decoder never pads inside a batch (valid ratio 1, like
    the official code, which passes all-False masks), so the valid size is the level's full size.
    """
    points = []
    for h, w in spatial_shapes:
        ys = (torch.arange(h, dtype=torch.float32, device=device) + 0.5) / h
        xs = (torch.arange(w, dtype=torch.float32, device=device) + 0.5) / w
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack((grid_x.reshape(-1), grid_y.reshape(-1)), dim=-1))
    ref = torch.cat(points, dim=0)  # (S, 2)
    return ref[None, :, None, :].expand(batch, -1, num_levels, -1)


class MSDeformAttnEncoderLayer(nn.Module):
    """Post-norm deformable self-attention + ReLU FFN over the flattened multi-scale sequence ``(N, S, C)``."""

    def __init__(
        self,
        d_model: int = 256,
        dim_feedforward: int = 1024,
        dropout: float = 0.0,
        n_levels: int = 3,
        n_heads: int = 8,
        n_points: int = 4,
    ) -> None:
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(
        self,
        src: Tensor,
        pos: Tensor,
        reference_points: Tensor,
        spatial_shapes: Tensor,
        level_start_index: Tensor,
        level_shapes: Sequence[tuple[int, int]],
    ) -> Tensor:
        """``src``/``pos``: (N, S, C); positions go into the query only (values stay content-only). ``level_shapes``
        are ``spatial_shapes`` as Python ints, so the attention reads no tensor back."""
        attn = self.self_attn(
            src + pos, reference_points, src, spatial_shapes, level_start_index, level_shapes=level_shapes
        )
        src = self.norm1(src + self.dropout1(attn))
        ffn = self.linear2(self.dropout2(F.relu(self.linear1(src))))
        return self.norm2(src + self.dropout3(ffn))


class MSDeformAttnEncoder(nn.Module):
    """The stack of encoder layers (official name ``encoder``, children ``layers.{i}``)."""

    def __init__(self, num_layers: int, **layer_kwargs) -> None:
        super().__init__()
        self.layers = nn.ModuleList(MSDeformAttnEncoderLayer(**layer_kwargs) for _ in range(num_layers))

    def forward(
        self,
        src: Tensor,
        pos: Tensor,
        spatial_shapes: Tensor,
        level_start_index: Tensor,
        level_shapes: Sequence[tuple[int, int]],
    ) -> Tensor:
        """``level_shapes``: the (H_l, W_l) of ``spatial_shapes`` as Python ints (no host sync per layer)."""
        ref = encoder_reference_points(level_shapes, src.shape[0], len(level_shapes), src.device)
        for layer in self.layers:
            src = layer(src, pos, ref, spatial_shapes, level_start_index, level_shapes)
        return src


class _EncoderOnlyTransformer(nn.Module):
    """Holds ``level_embed`` (L, C) and ``encoder``; flattens levels and returns them as (N, C, H_l, W_l) maps.

    The level embedding is added to the (level-agnostic) sine encoding so a query can tell stride 8 from stride 32.
    """

    def __init__(
        self,
        d_model: int,
        nhead: int,
        num_encoder_layers: int,
        dim_feedforward: int,
        dropout: float,
        num_feature_levels: int,
        n_points: int,
    ) -> None:
        super().__init__()
        self.level_embed = nn.Parameter(torch.empty(num_feature_levels, d_model))
        self.encoder = MSDeformAttnEncoder(
            num_encoder_layers,
            d_model=d_model,
            dim_feedforward=dim_feedforward,
            dropout=dropout,
            n_levels=num_feature_levels,
            n_heads=nhead,
            n_points=n_points,
        )
        # Official initialisation: Xavier on every matrix, then MSDeformAttn's own scheme, N(0, 1) level embeddings.
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m.reset_parameters()
        nn.init.normal_(self.level_embed)

    def forward(self, srcs: list[Tensor], pos_embeds: list[Tensor]) -> list[Tensor]:
        """Level sizes are Python ints from the feature shapes; the official tensors are built from them once per
        forward on the host (``level_tensors``), so no layer reads a size back from the device."""
        shapes = [(int(s.shape[-2]), int(s.shape[-1])) for s in srcs]
        src = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], dim=1)
        pos = torch.cat(
            [p.flatten(2).transpose(1, 2) + self.level_embed[lvl].view(1, 1, -1) for lvl, p in enumerate(pos_embeds)],
            dim=1,
        )
        spatial_shapes, level_start_index = level_tensors(shapes, src.device)
        memory = self.encoder(src, pos, spatial_shapes, level_start_index, shapes)
        n, _, c = memory.shape
        sizes = [h * w for h, w in shapes]
        return [z.transpose(1, 2).reshape(n, c, h, w) for z, (h, w) in zip(memory.split(sizes, dim=1), shapes)]


class _ConvNorm(nn.Conv2d):
    """Conv2d with ``norm`` and optional ReLU as attributes, so keys read ``adapter_1.weight``, ``adapter_1.norm.*``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, norm: str, relu: bool) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=not norm)
        self.norm = get_norm(norm, out_channels)
        self.relu = relu
        nn.init.kaiming_uniform_(self.weight, a=1)  # "c2_xavier_fill" of the official code
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm(super().forward(x))
        return F.relu(x) if self.relu else x


@PIXEL_DECODER_REGISTRY.register()
class MSDeformAttnPixelDecoder(nn.Module):
    """Backbone features ``{name: (N, C_in, H/s, W/s)}`` -> mask features and the multi-scale maps of the decoder.

    ``transformer_in_features`` (strides 8/16/32 by default) go through the deformable encoder; every other input
    feature whose stride lies in ``[common_stride, min transformer stride)`` (res2 here) gets an FPN lateral/output
    conv, finest last. Input sizes need not be multiples of 32; the FPN upsamples to each lateral's size.
    """

    def __init__(
        self,
        input_shape: dict[str, ShapeSpec],
        conv_dim: int = 256,
        mask_dim: int = 256,
        norm: str = "GN",
        transformer_in_features: Sequence[str] = ("res3", "res4", "res5"),
        common_stride: int = 4,
        transformer_dropout: float = 0.0,
        transformer_nheads: int = 8,
        transformer_dim_feedforward: int = 1024,
        transformer_enc_layers: int = 6,
        n_points: int = 4,
        force_fp32: bool = True,
    ) -> None:
        """``force_fp32`` (``MODEL.SEM_SEG_HEAD.DEFORMABLE_FP32``) runs the decoder outside autocast in float32, as
        the official code does. False lets it follow autocast: convolutions and projections run in the autocast
        dtype, the deformable op reads that dtype's value with float32 locations and weights (float32 accumulation),
        and the three outputs of :meth:`forward_features` come out in the autocast dtype (bfloat16 under bf16 AMP)."""
        super().__init__()
        missing = [f for f in transformer_in_features if f not in input_shape]
        if missing:
            raise ValueError(
                f"MSDeformAttnPixelDecoder: transformer_in_features {missing} not among the backbone features "
                f"{sorted(input_shape)}; fix MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES"
            )
        # Coarsest first: level 0 of the encoder (and input_proj[0], level_embed[0]) is the stride-32 map.
        self.transformer_in_features = sorted(transformer_in_features, key=lambda f: -input_shape[f].stride)
        min_stride = min(input_shape[f].stride for f in self.transformer_in_features)
        # FPN levels, coarsest first (the order they are applied in).
        self.fpn_in_features = sorted(
            (
                f
                for f, s in input_shape.items()
                if common_stride <= s.stride < min_stride and f not in transformer_in_features
            ),
            key=lambda f: -input_shape[f].stride,
        )
        self.common_stride = common_stride
        self.force_fp32 = force_fp32
        self.mask_dim = mask_dim

        self.input_proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(input_shape[f].channels, conv_dim, kernel_size=1), nn.GroupNorm(32, conv_dim))
            for f in self.transformer_in_features
        )
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.zeros_(proj[0].bias)
        self.transformer = _EncoderOnlyTransformer(
            d_model=conv_dim,
            nhead=transformer_nheads,
            num_encoder_layers=transformer_enc_layers,
            dim_feedforward=transformer_dim_feedforward,
            dropout=transformer_dropout,
            num_feature_levels=len(self.transformer_in_features),
            n_points=n_points,
        )
        self.pe_layer = PositionEmbeddingSine(conv_dim // 2, normalize=True)
        self.mask_features = nn.Conv2d(conv_dim, mask_dim, kernel_size=1)  # 1x1 in the official decoder
        nn.init.kaiming_uniform_(self.mask_features.weight, a=1)
        nn.init.zeros_(self.mask_features.bias)

        # Official numbering: adapter_1/layer_1 is the finest FPN level (res2); registered as attributes, not a list.
        self.lateral_convs: list[_ConvNorm] = []
        self.output_convs: list[_ConvNorm] = []
        finest_first = self.fpn_in_features[::-1]
        for idx, f in enumerate(finest_first):
            lateral = _ConvNorm(input_shape[f].channels, conv_dim, 1, norm, relu=False)
            output = _ConvNorm(conv_dim, conv_dim, 3, norm, relu=True)
            self.add_module(f"adapter_{idx + 1}", lateral)
            self.add_module(f"layer_{idx + 1}", output)
            self.lateral_convs.insert(0, lateral)
            self.output_convs.insert(0, output)
        self.maskformer_num_feature_levels = 3  # the transformer decoder cycles through 3 scales

    @classmethod
    def from_config(cls, cfg, input_shape: dict[str, ShapeSpec]) -> dict:
        """Constructor keyword arguments (without ``input_shape``) from ``cfg.MODEL.SEM_SEG_HEAD``."""
        head = cfg.MODEL.SEM_SEG_HEAD
        return {
            "conv_dim": head.CONVS_DIM,
            "mask_dim": head.MASK_DIM,
            "norm": head.NORM,
            "transformer_in_features": list(head.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES),
            "common_stride": head.COMMON_STRIDE,
            "transformer_dropout": head.DEFORMABLE_TRANSFORMER_ENCODER_DROPOUT,
            "transformer_nheads": head.DEFORMABLE_TRANSFORMER_ENCODER_N_HEADS,
            "transformer_dim_feedforward": head.DEFORMABLE_TRANSFORMER_ENCODER_DIM_FEEDFORWARD,
            "transformer_enc_layers": head.TRANSFORMER_ENC_LAYERS,
            "n_points": head.DEFORMABLE_TRANSFORMER_ENCODER_N_POINTS,
            "force_fp32": head.DEFORMABLE_FP32,
        }

    def forward_features(self, features: dict[str, Tensor]) -> tuple[Tensor, Tensor, list[Tensor]]:
        """Returns ``(mask_features, transformer_encoder_features, multi_scale_features)``:

        - mask_features: (N, mask_dim, H/4, W/4), dotted with query embeddings to give mask logits;
        - transformer_encoder_features: (N, conv_dim, H/32, W/32), the encoder's coarsest output (as official);
        - multi_scale_features: 3 maps (N, conv_dim, H/s, W/s) for s = 32, 16, 8, coarsest first, which the
          masked-attention decoder cycles through.
        """
        device_type = next(iter(features.values())).device.type
        # Not forced: no autocast context of its own (enabled=True would switch on autocast's default dtype, fp16 on
        # CUDA, even when the caller runs in float32), so the caller's autocast, or none, applies.
        precision = torch.autocast(device_type=device_type, enabled=False) if self.force_fp32 else nullcontext()
        with precision:
            cast = (lambda t: t.float()) if self.force_fp32 else (lambda t: t)
            srcs, pos = [], []
            for proj, f in zip(self.input_proj, self.transformer_in_features):
                x = cast(features[f])
                srcs.append(proj(x))
                pos.append(self.pe_layer(x))
            out = self.transformer(srcs, pos)
            for f, lateral, output in zip(self.fpn_in_features, self.lateral_convs, self.output_convs):
                cur = lateral(cast(features[f]))
                up = F.interpolate(out[-1], size=cur.shape[-2:], mode="bilinear", align_corners=False)
                out.append(output(cur + up))
            return self.mask_features(out[-1]), out[0], out[: self.maskformer_num_feature_levels]

    def forward(self, features: dict[str, Tensor]) -> tuple[Tensor, Tensor, list[Tensor]]:
        return self.forward_features(features)
