"""The SeMask-FPN decoder: a Semantic-FPN head straight on the backbone stages, and a light decoder of the class
priors, with the loss ``CE(main) + 0.4 * CE(summed priors)`` (Jain et al., 2021; official ``BranchFPNHead``).

Unlike :class:`SemanticFPNHead` there is no FPN neck: each stage feature goes through its own tower of (3x3 conv,
norm, ReLU, 2x bilinear upsample) down to the finest stride, the towers are summed, dropped out and classified. The
prior maps (K logits per token, one per stage) are only upsampled by the same 2x steps and summed: they carry no
parameters, so the prior loss trains the backbone's semantic layers directly.
"""

import math
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ...config import CfgNode
from ..backbone.base import ShapeSpec
from ..build import SEM_SEG_HEADS_REGISTRY
from ..layers import conv_norm_act
from .losses import pixel_cross_entropy


def _upsample2x() -> nn.Module:
    return nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)


@SEM_SEG_HEADS_REGISTRY.register()
class SeMaskFPNHead(nn.Module):
    """``forward(features, priors)`` -> (logits, prior logits), both ``(N, K, H / s, W / s)`` with ``s`` the finest
    input stride (4 for Swin); ``priors`` None skips the prior decoder (inference needs only the logits).

    Compute (:meth:`layers`) is separate from the loss (:meth:`losses`), as in the other heads.
    """

    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        *,
        num_classes: int,
        in_features: List[str],
        channels: int = 256,
        norm: str = "SyncBN",
        dropout: float = 0.1,
        loss_weight: float = 1.0,
        prior_loss_weight: float = 0.4,
        ignore_label: int = 255,
        loss_avg_non_ignore: bool = False,
        ohem_min_kept: int = 0,
    ) -> None:
        super().__init__()
        missing = [f for f in in_features if f not in input_shape]
        if missing:
            raise ValueError(f"SeMaskFPNHead needs features {missing}; the backbone offers {sorted(input_shape)}")
        self.in_features = sorted(in_features, key=lambda f: input_shape[f].stride)
        self.loss_weight = loss_weight
        self.prior_loss_weight = prior_loss_weight
        self.ignore_label = ignore_label
        self.loss_avg_non_ignore = loss_avg_non_ignore
        self.ohem_min_kept = ohem_min_kept
        finest = input_shape[self.in_features[0]].stride
        self.towers = nn.ModuleList()
        self.prior_towers = nn.ModuleList()
        for name in self.in_features:
            upsamples = int(math.log2(input_shape[name].stride // finest))
            tower: List[nn.Module] = []
            for k in range(max(upsamples, 1)):
                tower.append(conv_norm_act(input_shape[name].channels if k == 0 else channels, channels, 3, norm))
                if upsamples:
                    tower.append(_upsample2x())
            self.towers.append(nn.Sequential(*tower))
            self.prior_towers.append(nn.Sequential(*[_upsample2x() for _ in range(upsamples)]))
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        nn.init.normal_(self.conv_seg.weight, std=0.01)  # MMSegmentation's classifier initialisation
        nn.init.zeros_(self.conv_seg.bias)

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: Dict[str, ShapeSpec]) -> dict:
        h, s = cfg.MODEL.SEM_SEG_HEAD, cfg.MODEL.SEMASK
        return {
            "num_classes": h.NUM_CLASSES,
            "in_features": h.IN_FEATURES,
            "channels": h.CONVS_DIM,
            "norm": h.NORM,
            "dropout": h.DROPOUT,
            "loss_weight": h.LOSS_WEIGHT,
            "prior_loss_weight": s.PRIOR_LOSS_WEIGHT,
            "ignore_label": h.IGNORE_VALUE,
            "loss_avg_non_ignore": h.LOSS_AVG_NON_IGNORE,
            "ohem_min_kept": s.OHEM_MIN_KEPT,
        }

    @staticmethod
    def _fuse(towers: nn.ModuleList, maps: List[torch.Tensor]) -> torch.Tensor:
        """Sum of the towers' outputs, each resized to the finest one's size, as the release's ``BranchFPNHead``: at
        sizes that are not multiples of 32 a coarse map is not an exact half (51x70 -> 26x35), so its 2x upsamplings
        land near, not on, the stride-4 size."""
        fused = towers[0](maps[0])
        for tower, x in zip(towers[1:], maps[1:]):
            fused = fused + F.interpolate(tower(x), size=fused.shape[-2:], mode="bilinear", align_corners=False)
        return fused

    def layers(
        self, features: Dict[str, torch.Tensor], priors: Optional[Dict[str, torch.Tensor]] = None
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(class logits, summed prior logits or None), at the finest feature's size."""
        logits = self.conv_seg(self.dropout(self._fuse(self.towers, [features[f] for f in self.in_features])))
        if priors is None:
            return logits, None
        return logits, self._fuse(self.prior_towers, [priors[f] for f in self.in_features])

    def losses(
        self, outputs: Tuple[torch.Tensor, Optional[torch.Tensor]], targets: torch.Tensor
    ) -> Dict[str, torch.Tensor]:
        """Cross-entropy of the logits (with OHEM when set) and ``prior_loss_weight`` x that of the summed priors,
        both at the label resolution; ``targets`` ``(N, H, W)`` with the ignore label."""
        logits, prior_logits = outputs
        avg = self.loss_avg_non_ignore
        loss = pixel_cross_entropy(logits, targets, self.ignore_label, avg, self.ohem_min_kept)
        losses = {"loss_sem_seg": loss * self.loss_weight}
        if prior_logits is not None and self.prior_loss_weight > 0:
            prior_loss = pixel_cross_entropy(prior_logits, targets, self.ignore_label, avg)
            losses["loss_prior"] = prior_loss * self.prior_loss_weight
        return losses

    def forward(
        self, features: Dict[str, torch.Tensor], priors: Optional[Dict[str, torch.Tensor]] = None
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        return self.layers(features, priors)
