"""Segmenter's decoders (Strudel et al., 2021) on the patch-token map of a ViT backbone.

* :class:`SegmenterMaskTransformerHead`: learnable class embeddings are appended to the projected patch tokens and
  both go through a few transformer layers; after a final LayerNorm and a linear projection of each, patches and
  classes are L2-normalised, class masks are their scalar products ``(N, h*w, K)``, and a LayerNorm over the K classes
  ("mask norm") turns them into logits.
* :class:`SegmenterLinearHead`: one linear (1x1) classifier per patch token, the paper's baseline.

Parameter names follow MMSegmentation's ``SegmenterMaskTransformerHead`` (``dec_proj``, ``cls_emb``, ``layers``,
``decoder_norm``, ``patch_proj``, ``classes_proj``, ``mask_norm``) and its linear ``conv_seg``, except that its
``layers`` are ``blocks`` here (``layers`` is the head's compute method): timm ``Block`` s, pre-norm attention and MLP,
the computation of MMSegmentation's encoder layer. Converting the FreeMask checkpoints is a renaming table.
"""

from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block
from torch import nn

from ...config import CfgNode
from ..backbone.base import ShapeSpec
from ..registry import SEM_SEG_HEADS_REGISTRY
from .base import PixelHead


def _single_feature(input_shape: dict[str, ShapeSpec], in_features: list[str]) -> str:
    if len(in_features) != 1 or in_features[0] not in input_shape:
        raise ValueError(
            f"MODEL.SEM_SEG_HEAD.IN_FEATURES of a Segmenter head must be one of the backbone's outputs "
            f"{sorted(input_shape)}, got {list(in_features)}"
        )
    return in_features[0]


class _SegmenterHead(PixelHead):
    """What both decoders share beyond :class:`PixelHead`: one input feature, logits at its stride."""

    def __init__(self, input_shape: dict[str, ShapeSpec], in_features: list[str], **head_args: Any) -> None:
        super().__init__(**head_args)
        self.in_feature = _single_feature(input_shape, in_features)
        self.in_channels = input_shape[self.in_feature].channels


@SEM_SEG_HEADS_REGISTRY.register()
class SegmenterLinearHead(_SegmenterHead):
    """A 1x1 convolution from the patch tokens to K logits (MMSegmentation's ``FCNHead`` with no convolutions)."""

    def __init__(
        self,
        input_shape: dict[str, ShapeSpec],
        *,
        num_classes: int,
        in_features: list[str],
        **loss_args: Any,
    ) -> None:
        super().__init__(input_shape, in_features, num_classes=num_classes, **loss_args)
        self._add_classifier(self.in_channels, dropout=0.0)
        self._init_classifier()

    def layers(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.classify(features[self.in_feature])


@SEM_SEG_HEADS_REGISTRY.register()
class SegmenterMaskTransformerHead(_SegmenterHead):
    """Segmenter's mask transformer.

    Args:
        d_model: width of the decoder (0 = the backbone's); patch tokens are projected to it by ``dec_proj``.
        num_layers: transformer layers over ``[patch tokens; class embeddings]`` (2 published).
        num_heads: attention heads (0 = ``d_model // 64``, the backbone's head count for ViT-S/B).
        mlp_ratio: hidden width of each layer's MLP over ``d_model``.
        drop_path_rate: stochastic depth of the last layer, linearly from 0 at the first (MMSegmentation: 0.1).
        dropout: dropout after attention and inside the MLP (0 published).
    """

    def __init__(
        self,
        input_shape: dict[str, ShapeSpec],
        *,
        num_classes: int,
        in_features: list[str],
        d_model: int = 0,
        num_layers: int = 2,
        num_heads: int = 0,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.1,
        dropout: float = 0.0,
        **loss_args: Any,
    ) -> None:
        super().__init__(input_shape, in_features, num_classes=num_classes, **loss_args)
        d_model = d_model or self.in_channels
        num_heads = num_heads or max(d_model // 64, 1)
        if d_model % num_heads:
            raise ValueError(f"MODEL.SEGMENTER: D_MODEL {d_model} is not divisible by NUM_HEADS {num_heads}")
        self.dec_proj = nn.Linear(self.in_channels, d_model)
        self.cls_emb = nn.Parameter(torch.zeros(1, num_classes, d_model))
        rates = [drop_path_rate * i / max(num_layers - 1, 1) for i in range(num_layers)]  # linspace(0, rate, n)
        # Every LayerNorm with eps 1e-5, as MMSegmentation's decoder (its LN norm_cfg builds torch's default), not
        # the 1e-6 timm's Block uses: the class tokens have a small variance, so eps moves about 1% of the labels.
        norm = partial(nn.LayerNorm, eps=1e-5)
        self.blocks = nn.ModuleList(
            Block(d_model, num_heads, mlp_ratio, qkv_bias=True, proj_drop=dropout, drop_path=rate, norm_layer=norm)
            for rate in rates
        )
        self.decoder_norm = norm(d_model)
        self.patch_proj = nn.Linear(d_model, d_model, bias=False)
        self.classes_proj = nn.Linear(d_model, d_model, bias=False)
        self.mask_norm = norm(num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """MMSegmentation's initialisation: truncated normal (std 0.02) for linear layers and class embeddings."""
        trunc_normal_(self.cls_emb, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: dict[str, ShapeSpec]) -> dict:
        s = cfg.MODEL.SEGMENTER
        return {
            **super().from_config(cfg, input_shape),
            "d_model": s.D_MODEL,
            "num_layers": s.NUM_LAYERS,
            "num_heads": s.NUM_HEADS,
            "mlp_ratio": s.MLP_RATIO,
            "drop_path_rate": s.DROP_PATH_RATE,
            "dropout": s.DROPOUT,
        }

    def mask_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """Mask logits ``(N, h*w, K)`` of patch tokens ``(N, h*w, C_in)``."""
        x = self.dec_proj(tokens)
        x = torch.cat([x, self.cls_emb.expand(x.shape[0], -1, -1)], dim=1)
        for block in self.blocks:
            x = block(x)
        x = self.decoder_norm(x)
        patches = F.normalize(self.patch_proj(x[:, : -self.num_classes]), dim=-1)
        classes = F.normalize(self.classes_proj(x[:, -self.num_classes :]), dim=-1)
        return self.mask_norm(patches @ classes.transpose(1, 2))

    def layers(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        feature = features[self.in_feature]
        n, _, h, w = feature.shape
        masks = self.mask_logits(feature.flatten(2).transpose(1, 2))
        return masks.transpose(1, 2).reshape(n, self.num_classes, h, w)
