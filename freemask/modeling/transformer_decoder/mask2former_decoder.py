"""Mask2Former's masked-attention transformer decoder (Cheng et al., CVPR 2022), written from the paper's facts.

Learnable queries are refined by ``dec_layers`` layers that cycle through three feature scales, coarsest first. In each
layer the queries cross-attend only to the pixels their previous mask prediction covers (masked attention), then
self-attend, then pass an FFN. A class and mask prediction is made after the query initialisation and after every
layer (deep supervision), so there are ``dec_layers + 1`` predictions: the last is the output, the others are
``aux_outputs``.

Parameter names follow the official implementation (``transformer_self_attention_layers.{i}.self_attn`` ...,
``query_feat``, ``mask_embed.layers.{j}`` ...) so its checkpoints map onto this module by a plain key table.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...config import CfgNode
from ..pixel_decoder.position_encoding import PositionEmbeddingSine
from ..registry import TRANSFORMER_DECODER_REGISTRY

NUM_FEATURE_LEVELS = 3


class SelfAttentionLayer(nn.Module):
    """Query-to-query attention with a residual and LayerNorm; positions are added to queries and keys only."""

    def __init__(self, d_model: int, nhead: int, normalize_before: bool = False) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, batch_first=True)
        self.norm = nn.LayerNorm(d_model)
        self.normalize_before = normalize_before
        _xavier_init(self)

    def forward(self, tgt: Tensor, query_pos: Tensor) -> Tensor:
        """``tgt``, ``query_pos``: (N, Q, C) -> (N, Q, C)."""
        x = self.norm(tgt) if self.normalize_before else tgt
        q = k = x + query_pos
        tgt = tgt + self.self_attn(q, k, value=x, need_weights=False)[0]
        return tgt if self.normalize_before else self.norm(tgt)


class CrossAttentionLayer(nn.Module):
    """Queries attend to pixel features (``memory``); ``attn_mask`` (True = may not attend) makes it masked."""

    def __init__(self, d_model: int, nhead: int, normalize_before: bool = False) -> None:
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, batch_first=True)
        self.norm = nn.LayerNorm(d_model)
        self.normalize_before = normalize_before
        _xavier_init(self)

    def forward(self, tgt: Tensor, memory: Tensor, attn_mask: Tensor | None, pos: Tensor, query_pos: Tensor) -> Tensor:
        """``tgt``, ``query_pos``: (N, Q, C); ``memory``, ``pos``: (N, HW, C); ``attn_mask``: bool (N*heads, Q, HW)."""
        x = self.norm(tgt) if self.normalize_before else tgt
        out = self.multihead_attn(x + query_pos, memory + pos, value=memory, attn_mask=attn_mask, need_weights=False)
        tgt = tgt + out[0]
        return tgt if self.normalize_before else self.norm(tgt)


class FFNLayer(nn.Module):
    """Two-layer ReLU MLP applied per query, with a residual and LayerNorm."""

    def __init__(self, d_model: int, dim_feedforward: int, normalize_before: bool = False) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.normalize_before = normalize_before
        _xavier_init(self)

    def forward(self, tgt: Tensor) -> Tensor:
        """(N, Q, C) -> (N, Q, C)."""
        x = self.norm(tgt) if self.normalize_before else tgt
        tgt = tgt + self.linear2(F.relu(self.linear1(x)))
        return tgt if self.normalize_before else self.norm(tgt)


class MLP(nn.Module):
    """``num_layers`` Linear layers with ReLU between them (not after the last); used for the mask embedding."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims[:-1], dims[1:]))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


def _xavier_init(module: nn.Module) -> None:
    """The official decoder layers start from Xavier-uniform matrices (LayerNorms and biases keep their defaults)."""
    for p in module.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)


@TRANSFORMER_DECODER_REGISTRY.register()
class MultiScaleMaskedTransformerDecoder(nn.Module):
    """Mask2Former's transformer decoder: ``num_queries`` queries -> per-query class logits and mask logits.

    ``dec_layers`` is the number of decoder layers (9 in Mask2Former). The official config key ``DEC_LAYERS: 10``
    counts the query-initialisation prediction as a layer and subtracts one; we do not: our ``DEC_LAYERS`` is the
    layer count itself, so the official recipe is ``DEC_LAYERS: 9``.
    """

    def __init__(
        self,
        in_channels: int = 256,
        *,
        num_classes: int,
        hidden_dim: int = 256,
        num_queries: int = 100,
        nheads: int = 8,
        dim_feedforward: int = 2048,
        dec_layers: int = 9,
        pre_norm: bool = False,
        mask_dim: int = 256,
        enforce_input_project: bool = False,
        mask_classification: bool = True,
    ) -> None:
        super().__init__()
        if not mask_classification:
            raise ValueError("MultiScaleMaskedTransformerDecoder only supports mask_classification=True")
        self.num_heads = nheads
        self.num_layers = dec_layers
        # The sine encoding has hidden_dim // 2 features per axis so that y and x together give hidden_dim channels.
        self.pe_layer = PositionEmbeddingSine(hidden_dim // 2, normalize=True)
        self.transformer_self_attention_layers = nn.ModuleList(
            SelfAttentionLayer(hidden_dim, nheads, pre_norm) for _ in range(dec_layers)
        )
        self.transformer_cross_attention_layers = nn.ModuleList(
            CrossAttentionLayer(hidden_dim, nheads, pre_norm) for _ in range(dec_layers)
        )
        self.transformer_ffn_layers = nn.ModuleList(
            FFNLayer(hidden_dim, dim_feedforward, pre_norm) for _ in range(dec_layers)
        )
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        # Content (query_feat) and positional (query_embed) parts of the queries are learned separately.
        self.query_feat = nn.Embedding(num_queries, hidden_dim)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.level_embed = nn.Embedding(NUM_FEATURE_LEVELS, hidden_dim)
        self.input_proj = nn.ModuleList(
            _input_projection(in_channels, hidden_dim, enforce_input_project) for _ in range(NUM_FEATURE_LEVELS)
        )
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)  # +1: the "no object" class
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)

    @classmethod
    def from_config(cls, cfg: CfgNode, in_channels: int, mask_classification: bool = True) -> dict:
        """Constructor keyword arguments from ``MODEL.MASK_FORMER.*`` and ``MODEL.SEM_SEG_HEAD.{NUM_CLASSES,MASK_DIM}``.

        Keys: MASK_FORMER.{HIDDEN_DIM, NUM_OBJECT_QUERIES, NHEADS, DIM_FEEDFORWARD, DEC_LAYERS (layer count, 9 for
        Mask2Former -- not the official 10), PRE_NORM, ENFORCE_INPUT_PROJ}.
        """
        m = cfg.MODEL.MASK_FORMER
        return {
            "in_channels": in_channels,
            "mask_classification": mask_classification,
            "num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            "hidden_dim": m.HIDDEN_DIM,
            "num_queries": m.NUM_OBJECT_QUERIES,
            "nheads": m.NHEADS,
            "dim_feedforward": m.DIM_FEEDFORWARD,
            "dec_layers": m.DEC_LAYERS,
            "pre_norm": m.PRE_NORM,
            "mask_dim": cfg.MODEL.SEM_SEG_HEAD.MASK_DIM,
            "enforce_input_project": m.ENFORCE_INPUT_PROJ,
        }

    def forward(self, x: list[Tensor], mask_features: Tensor, mask: Tensor | None = None) -> dict[str, object]:
        """Refine the queries and predict classes and masks.

        Args:
            x: three feature maps, coarsest first, each (N, in_channels, H_i, W_i) (strides 32, 16, 8 in Mask2Former).
            mask_features: (N, mask_dim, H/4, W/4) per-pixel embeddings that query embeddings are dotted with.
            mask: padding mask; unused, as in Mask2Former (padded pixels are simply attended), kept for API parity.

        Returns:
            ``pred_logits`` (N, Q, K+1), ``pred_masks`` (N, Q, H/4, W/4) from the last layer, and ``aux_outputs``: a
            list of ``dec_layers`` such dicts, from the query initialisation and from every layer but the last.
        """
        if len(x) != NUM_FEATURE_LEVELS:
            raise ValueError(
                f"MultiScaleMaskedTransformerDecoder expects {NUM_FEATURE_LEVELS} feature maps, got {len(x)}"
            )
        sizes, src, pos = [], [], []
        for i, feature in enumerate(x):
            sizes.append(feature.shape[-2:])
            pos.append(self.pe_layer(feature).flatten(2).transpose(1, 2))  # (N, HW, C)
            # The level embedding tells the queries which scale a pixel comes from; it is part of keys and values.
            level = self.level_embed.weight[i][None, :, None]
            src.append((self.input_proj[i](feature).flatten(2) + level).transpose(1, 2))

        n = mask_features.shape[0]
        query_pos = self.query_embed.weight.unsqueeze(0).expand(n, -1, -1)
        output = self.query_feat.weight.unsqueeze(0).expand(n, -1, -1)

        logits, masks, attn_mask = self.forward_prediction_heads(output, mask_features, sizes[0])
        predictions = [(logits, masks)]
        for i in range(self.num_layers):
            level = i % NUM_FEATURE_LEVELS
            output = self.transformer_cross_attention_layers[i](output, src[level], attn_mask, pos[level], query_pos)
            output = self.transformer_self_attention_layers[i](output, query_pos)
            output = self.transformer_ffn_layers[i](output)
            next_size = sizes[(i + 1) % NUM_FEATURE_LEVELS]
            logits, masks, attn_mask = self.forward_prediction_heads(output, mask_features, next_size)
            predictions.append((logits, masks))

        return {
            "pred_logits": predictions[-1][0],
            "pred_masks": predictions[-1][1],
            "aux_outputs": [{"pred_logits": c, "pred_masks": m} for c, m in predictions[:-1]],
        }

    def forward_prediction_heads(
        self, output: Tensor, mask_features: Tensor, attn_mask_target_size: tuple[int, int]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Class logits (N, Q, K+1), mask logits (N, Q, H/4, W/4) and the next layer's attention mask.

        The attention mask is bool (N * heads, Q, h * w) at ``attn_mask_target_size`` = (h, w), True where the
        predicted mask probability is < 0.5 (the pixel is outside the query's region). A query whose region is empty
        would have a fully masked row and a softmax over nothing (NaN), so such rows are unmasked: that query attends
        everywhere. The mask is detached: it routes attention, gradients flow through the attention itself.
        """
        decoded = self.decoder_norm(output)
        logits = self.class_embed(decoded)
        masks = torch.einsum("nqc,nchw->nqhw", self.mask_embed(decoded), mask_features)
        resized = F.interpolate(masks, size=attn_mask_target_size, mode="bilinear", align_corners=False)
        attn_mask = resized.detach().sigmoid().flatten(2) < 0.5  # (N, Q, hw)
        attn_mask = attn_mask & ~attn_mask.all(dim=-1, keepdim=True)
        attn_mask = attn_mask.repeat_interleave(self.num_heads, dim=0)  # (N * heads, Q, hw), batch-major as MHA wants
        return logits, masks, attn_mask


def _input_projection(in_channels: int, hidden_dim: int, enforce: bool) -> nn.Module:
    """1x1 conv to ``hidden_dim`` when the widths differ (or when forced), otherwise a parameter-free identity."""
    if in_channels == hidden_dim and not enforce:
        return nn.Identity()
    conv = nn.Conv2d(in_channels, hidden_dim, kernel_size=1)
    nn.init.kaiming_uniform_(conv.weight, a=1)  # detectron2's "c2_xavier_fill", as the official decoder uses
    nn.init.zeros_(conv.bias)
    return conv
