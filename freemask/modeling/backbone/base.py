"""The interface every backbone offers to heads: named feature maps with known channels and strides."""

from dataclasses import dataclass
from typing import Dict

import torch
from torch import nn


@dataclass(frozen=True)
class ShapeSpec:
    """Channels and stride (input pixels per feature pixel) of one feature map."""

    channels: int
    stride: int


class Backbone(nn.Module):
    """Maps images ``(N, 3, H, W)`` to ``{name: (N, C, H / stride, W / stride)}`` (names like ``res2``..``res5``).

    Heads are built from :meth:`output_shape`, so swapping a ResNet for a Swin changes no head code.
    """

    def output_shape(self) -> Dict[str, ShapeSpec]:
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        raise NotImplementedError
