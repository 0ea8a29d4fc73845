"""SegFormer's all-MLP decoder: every level projected to one width, upsampled to stride 4, concatenated, fused,
classified.

The per-level projection is a 1x1 conv + BN + ReLU as in MMSegmentation's ``SegformerHead``, which the FreeMask
release trained with (the official code uses a plain linear layer there; the fusion conv + BN + ReLU and the
classifier are the same in both). Levels are concatenated finest first, MMSegmentation's order. Module names
(``convs.{i}``, ``fusion_conv``, ``conv_seg``) are MMSegmentation's, whose ``conv`` / ``bn`` are our ``0`` / ``1``.
"""

from typing import Dict, List

import torch
import torch.nn.functional as F
from torch import nn

from ...config import CfgNode
from ..backbone.base import ShapeSpec
from ..backbone.mix_transformer import segformer_spec
from ..build import SEM_SEG_HEADS_REGISTRY
from ..layers import conv_norm_act
from .losses import pixel_cross_entropy


@SEM_SEG_HEADS_REGISTRY.register()
class SegFormerHead(nn.Module):
    """Logits ``(N, K, H / s, W / s)`` at the stride ``s`` of the finest input feature (4 for MiT).

    Compute (:meth:`layers`) is separate from the loss (:meth:`losses`), as in the other heads, so another loss plugs
    in at one place.
    """

    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        *,
        num_classes: int,
        in_features: List[str],
        embed_dim: int,
        norm: str = "BN",
        dropout: float = 0.1,
        loss_weight: float = 1.0,
        ignore_label: int = 255,
        loss_avg_non_ignore: bool = False,
    ) -> None:
        super().__init__()
        missing = [f for f in in_features if f not in input_shape]
        if missing:
            raise ValueError(f"SegFormerHead needs features {missing}; the backbone offers {sorted(input_shape)}")
        self.in_features = sorted(in_features, key=lambda f: input_shape[f].stride)
        self.loss_weight = loss_weight
        self.ignore_label = ignore_label
        self.loss_avg_non_ignore = loss_avg_non_ignore
        self.convs = nn.ModuleList(conv_norm_act(input_shape[f].channels, embed_dim, 1, norm) for f in self.in_features)
        self.fusion_conv = conv_norm_act(embed_dim * len(self.in_features), embed_dim, 1, norm)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.conv_seg = nn.Conv2d(embed_dim, num_classes, 1)
        self._init_weights()

    def _init_weights(self) -> None:
        """MMSegmentation's: He-normal (fan-out) for the ReLU convs, normal std 0.01 for the classifier."""
        for module in [*self.convs, self.fusion_conv]:
            nn.init.kaiming_normal_(module[0].weight, mode="fan_out", nonlinearity="relu")
        nn.init.normal_(self.conv_seg.weight, std=0.01)
        nn.init.zeros_(self.conv_seg.bias)

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: Dict[str, ShapeSpec]) -> dict:
        h = cfg.MODEL.SEM_SEG_HEAD
        s = cfg.MODEL.SEGFORMER
        return {
            "num_classes": h.NUM_CLASSES,
            "in_features": h.IN_FEATURES,
            "embed_dim": s.DECODER_DIM or segformer_spec(cfg.MODEL.BACKBONE.MIT.VARIANT).decoder_dim,
            "norm": h.NORM,
            "dropout": h.DROPOUT,
            "loss_weight": h.LOSS_WEIGHT,
            "ignore_label": h.IGNORE_VALUE,
            "loss_avg_non_ignore": h.LOSS_AVG_NON_IGNORE,
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
        return self.conv_seg(self.dropout(self.fusion_conv(torch.cat(levels, dim=1))))

    def losses(self, logits: torch.Tensor, targets: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Pixel-wise cross-entropy at the label resolution; ``targets`` is ``(N, H, W)`` with the ignore label.

        Averaged over every label pixel, ignored ones counting 0 (MMSegmentation's default, so the published runs':
        a crop with many ignored, e.g. FreeMask-filtered, pixels weighs less), or with ``loss_avg_non_ignore`` over
        the labelled pixels only. A batch whose pixels are all ignored gives a zero loss rather than 0/0 = NaN.
        """
        loss = pixel_cross_entropy(logits, targets, self.ignore_label, self.loss_avg_non_ignore)
        return {"loss_sem_seg": loss * self.loss_weight}

    def forward(self, features: Dict[str, torch.Tensor]) -> torch.Tensor:
        return self.layers(features)
