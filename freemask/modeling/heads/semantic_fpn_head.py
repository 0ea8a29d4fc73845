"""Semantic FPN head (Kirillov et al., Panoptic FPN): FPN levels brought to one stride, summed, classified."""

import math
from typing import Any, Dict, List

import torch
import torch.nn.functional as F
from torch import nn

from ...config import CfgNode
from ..backbone.base import ShapeSpec
from ..layers import conv_norm_act
from ..registry import SEM_SEG_HEADS_REGISTRY
from .base import PixelHead
from .fpn import FPN


@SEM_SEG_HEADS_REGISTRY.register()
class SemanticFPNHead(PixelHead):
    """FPN neck, then per level a tower of (3x3 conv, norm, ReLU, 2x upsample) down to ``common_stride``; the towers
    are summed and classified by :class:`PixelHead`'s dropout and 1x1 conv, here named ``predictor`` (detectron2's).

    The loss averages over labelled pixels by default, as detectron2's ``SemSegFPNHead``.
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
        loss_avg_non_ignore: bool = True,
        **loss_args: Any,
    ) -> None:
        super().__init__(num_classes=num_classes, loss_avg_non_ignore=loss_avg_non_ignore, **loss_args)
        self.fpn = FPN(input_shape, in_features, conv_dims, norm)
        self.common_stride = common_stride
        self.towers = nn.ModuleList()
        for feature in self.fpn.in_features:
            upsamples = max(int(math.log2(input_shape[feature].stride // common_stride)), 0)
            layers: List[nn.Module] = []
            for k in range(max(upsamples, 1)):
                layers.append(conv_norm_act(conv_dims if k == 0 else head_dims, head_dims, 3, norm))
                if k < upsamples:
                    layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.towers.append(nn.Sequential(*layers))
        self._add_classifier(head_dims, dropout, name="predictor")

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: Dict[str, ShapeSpec]) -> dict:
        h = cfg.MODEL.SEM_SEG_HEAD
        return {
            **super().from_config(cfg, input_shape),
            "conv_dims": h.CONVS_DIM,
            "head_dims": h.HEAD_DIM,
            "common_stride": h.COMMON_STRIDE,
            "norm": h.NORM,
            "dropout": h.DROPOUT,
        }

    def layers(self, features: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Class logits ``(N, K, H / common_stride, W / common_stride)``."""
        levels = self.fpn(features)
        fused = self.towers[0](levels[0])
        for tower, level in zip(self.towers[1:], levels[1:]):
            fused = fused + F.interpolate(tower(level), size=fused.shape[-2:], mode="bilinear", align_corners=False)
        return self.classify(fused)
