"""SegFormer's all-MLP decoder: every level projected to one width, upsampled to stride 4, concatenated, fused,
classified.

The per-level projection is a 1x1 conv + BN + ReLU as in MMSegmentation's ``SegformerHead``, which the FreeMask
release trained with (the official code uses a plain linear layer there; the fusion conv + BN + ReLU and the
classifier are the same in both). Levels are concatenated finest first, MMSegmentation's order. Module names
(``convs.{i}``, ``fusion_conv``, ``conv_seg``) are MMSegmentation's, whose ``conv`` / ``bn`` are our ``0`` / ``1``.
"""

from typing import Any, Dict, List

import torch
import torch.nn.functional as F
from torch import nn

from ...config import CfgNode
from ..backbone.base import ShapeSpec
from ..build import fill_head_keys
from ..layers import conv_norm_act
from ..registry import SEM_SEG_HEADS_REGISTRY
from .base import PixelHead


@SEM_SEG_HEADS_REGISTRY.register()
class SegFormerHead(PixelHead):
    """Logits ``(N, K, H / s, W / s)`` at the stride ``s`` of the finest input feature (4 for MiT); loss, dropout and
    classifier ``conv_seg`` from :class:`PixelHead`."""

    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        *,
        num_classes: int,
        in_features: List[str],
        embed_dim: int,
        norm: str = "BN",
        dropout: float = 0.1,
        **loss_args: Any,
    ) -> None:
        super().__init__(num_classes=num_classes, **loss_args)
        self.in_features = self._features_by_stride(input_shape, in_features)
        self.convs = nn.ModuleList(conv_norm_act(input_shape[f].channels, embed_dim, 1, norm) for f in self.in_features)
        self.fusion_conv = conv_norm_act(embed_dim * len(self.in_features), embed_dim, 1, norm)
        self._add_classifier(embed_dim, dropout)
        self._init_weights()

    def _init_weights(self) -> None:
        """MMSegmentation's: He-normal (fan-out) for the ReLU convs, then the classifier's normal std 0.01."""
        for module in [*self.convs, self.fusion_conv]:
            nn.init.kaiming_normal_(module[0].weight, mode="fan_out", nonlinearity="relu")
        self._init_classifier()

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: Dict[str, ShapeSpec]) -> dict:
        cfg = fill_head_keys(cfg)  # MODEL.SEGFORMER.DECODER_DIM 0 -> the width the paper pairs with the encoder
        h = cfg.MODEL.SEM_SEG_HEAD
        return {
            **super().from_config(cfg, input_shape),
            "embed_dim": cfg.MODEL.SEGFORMER.DECODER_DIM,
            "norm": h.NORM,
            "dropout": h.DROPOUT,
        }

    def layers(self, features: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Class logits ``(N, K, h, w)``, ``(h, w)`` the size of the finest feature."""
        size = features[self.in_features[0]].shape[-2:]
        levels = []
        for conv, name in zip(self.convs, self.in_features):
            x = conv(features[name])
            if x.shape[-2:] != size:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            levels.append(x)
        return self.classify(self.fusion_conv(torch.cat(levels, dim=1)))
