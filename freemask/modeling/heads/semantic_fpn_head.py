"""Semantic FPN head (Kirillov et al., Panoptic FPN): FPN levels brought to one stride, summed, classified."""

import math
from typing import Dict, List

import torch
import torch.nn.functional as F
from torch import nn

from ...config import CfgNode
from ..backbone.base import ShapeSpec
from ..build import SEM_SEG_HEADS_REGISTRY
from ..layers import conv_norm_act
from .fpn import FPN
from .losses import pixel_cross_entropy


@SEM_SEG_HEADS_REGISTRY.register()
class SemanticFPNHead(nn.Module):
    """FPN neck, then per level a tower of (3x3 conv, norm, ReLU, 2x upsample) down to ``common_stride``; the towers
    are summed, dropped out and classified by a 1x1 conv.

    Compute (:meth:`layers`) is separate from the loss (:meth:`losses`) so another loss, e.g. one that ignores
    filtered synthetic pixels differently, plugs in at one place.
    """

    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        *,
        num_classes: int,
        in_features: List[str],
        conv_dims: int = 256,
        head_dims: int = 128,
        common_stride: int = 4,
        norm: str = "GN",
        dropout: float = 0.1,
        loss_weight: float = 1.0,
        ignore_label: int = 255,
        loss_avg_non_ignore: bool = True,
    ) -> None:
        super().__init__()
        self.fpn = FPN(input_shape, in_features, conv_dims, norm)
        self.common_stride = common_stride
        self.loss_weight = loss_weight
        self.ignore_label = ignore_label
        self.loss_avg_non_ignore = loss_avg_non_ignore
        self.towers = nn.ModuleList()
        for feature in self.fpn.in_features:
            upsamples = max(int(math.log2(input_shape[feature].stride // common_stride)), 0)
            layers: List[nn.Module] = []
            for k in range(max(upsamples, 1)):
                layers.append(conv_norm_act(conv_dims if k == 0 else head_dims, head_dims, 3, norm))
                if k < upsamples:
                    layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.towers.append(nn.Sequential(*layers))
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.predictor = nn.Conv2d(head_dims, num_classes, 1)

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: Dict[str, ShapeSpec]) -> dict:
        h = cfg.MODEL.SEM_SEG_HEAD
        return {
            "num_classes": h.NUM_CLASSES,
            "in_features": h.IN_FEATURES,
            "conv_dims": h.CONVS_DIM,
            "head_dims": h.HEAD_DIM,
            "common_stride": h.COMMON_STRIDE,
            "norm": h.NORM,
            "dropout": h.DROPOUT,
            "loss_weight": h.LOSS_WEIGHT,
            "ignore_label": h.IGNORE_VALUE,
            "loss_avg_non_ignore": h.LOSS_AVG_NON_IGNORE,
        }

    def layers(self, features: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Class logits ``(N, K, H / common_stride, W / common_stride)``."""
        levels = self.fpn(features)
        fused = self.towers[0](levels[0])
        for tower, level in zip(self.towers[1:], levels[1:]):
            fused = fused + F.interpolate(tower(level), size=fused.shape[-2:], mode="bilinear", align_corners=False)
        return self.predictor(self.dropout(fused))

    def losses(self, logits: torch.Tensor, targets: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Mean pixel-wise cross-entropy at the label resolution; ``targets`` is ``(N, H, W)`` with the ignore label.

        A batch whose pixels are all ignored (a crop of unlabeled area) gives a zero loss rather than 0/0 = NaN.
        """
        loss = pixel_cross_entropy(logits, targets, self.ignore_label, self.loss_avg_non_ignore)
        return {"loss_sem_seg": loss * self.loss_weight}

    def forward(self, features: Dict[str, torch.Tensor]) -> torch.Tensor:
        return self.layers(features)
