"""Feature pyramid network neck: lateral 1x1 convs, top-down nearest upsampling, 3x3 output convs."""

from typing import Dict, List

import torch
import torch.nn.functional as F
from torch import nn

from ..backbone.base import ShapeSpec
from ..layers import conv_norm_act


class FPN(nn.Module):
    """Turns backbone features of growing stride into maps of equal width ``out_channels`` at the same strides.

    The top-down path gives high-resolution levels the semantics of the deep ones, which is what the semantic head
    needs to classify small objects at stride 4.
    """

    def __init__(self, input_shape: Dict[str, ShapeSpec], in_features: List[str], out_channels: int, norm: str) -> None:
        super().__init__()
        self.in_features = sorted(in_features, key=lambda f: input_shape[f].stride)
        self.lateral = nn.ModuleList(
            conv_norm_act(input_shape[f].channels, out_channels, 1, norm, activation=False) for f in self.in_features
        )
        self.output = nn.ModuleList(
            conv_norm_act(out_channels, out_channels, 3, norm, activation=False) for _ in self.in_features
        )

    def forward(self, features: Dict[str, torch.Tensor]) -> List[torch.Tensor]:
        """Returns one ``(N, out_channels, H_i, W_i)`` map per input feature, finest first."""
        laterals = [conv(features[f]) for conv, f in zip(self.lateral, self.in_features)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=laterals[i - 1].shape[-2:], mode="nearest"
            )
        return [conv(x) for conv, x in zip(self.output, laterals)]
