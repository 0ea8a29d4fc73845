"""The SeMask-FPN decoder: a Semantic-FPN head straight on the backbone stages, and a light decoder of the class
priors, with the loss ``CE(main) + 0.4 * CE(summed priors)`` (Jain et al., 2021; official ``BranchFPNHead``).

Unlike :class:`SemanticFPNHead` there is no FPN neck: each stage feature goes through its own tower of (3x3 conv,
norm, ReLU, 2x bilinear upsample) down to the finest stride, the towers are summed, dropped out and classified. The
prior maps (K logits per token, one per stage) are only upsampled by the same 2x steps and summed: they carry no
parameters, so the prior loss trains the backbone's semantic layers directly.
"""

import math
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ...config import CfgNode
from ..backbone.base import ShapeSpec
from ..layers import conv_norm_act
from ..registry import SEM_SEG_HEADS_REGISTRY
from .base import PixelHead


def _upsample2x() -> nn.Module:
    return nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)


@SEM_SEG_HEADS_REGISTRY.register()
class SeMaskFPNHead(PixelHead):
    """``forward(features, priors)`` -> (logits, prior logits), both ``(N, K, H / s, W / s)`` with ``s`` the finest
    input stride (4 for Swin); ``priors`` None skips the prior decoder (inference needs only the logits).

    Dropout, classifier ``conv_seg`` and the main loss (with OHEM when ``ohem_min_kept`` is set) are
    :class:`PixelHead`'s; this head adds ``prior_loss_weight`` x the cross-entropy of the summed priors.
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
        prior_loss_weight: float = 0.4,
        **loss_args: Any,
    ) -> None:
        super().__init__(num_classes=num_classes, **loss_args)
        self.in_features = self._features_by_stride(input_shape, in_features)
        self.prior_loss_weight = prior_loss_weight
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
        self._add_classifier(channels, dropout)
        self._init_classifier()

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: Dict[str, ShapeSpec]) -> dict:
        h, s = cfg.MODEL.SEM_SEG_HEAD, cfg.MODEL.SEMASK
        return {
            **super().from_config(cfg, input_shape),
            "channels": h.CONVS_DIM,
            "norm": h.NORM,
            "dropout": h.DROPOUT,
            "prior_loss_weight": s.PRIOR_LOSS_WEIGHT,
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
        logits = self.classify(self._fuse(self.towers, [features[f] for f in self.in_features]))
        if priors is None:
            return logits, None
        return logits, self._fuse(self.prior_towers, [priors[f] for f in self.in_features])

    def losses(  # type: ignore[override]
        self, outputs: Tuple[torch.Tensor, Optional[torch.Tensor]], targets: torch.Tensor
    ) -> Dict[str, torch.Tensor]:
        """:class:`PixelHead`'s loss of the logits and ``prior_loss_weight`` x the cross-entropy (never OHEM) of the
        summed priors, both at the label resolution; ``targets`` ``(N, H, W)`` with the ignore label."""
        logits, prior_logits = outputs
        losses = super().losses(logits, targets)
        if prior_logits is not None and self.prior_loss_weight > 0:
            losses["loss_prior"] = self.cross_entropy(prior_logits, targets) * self.prior_loss_weight
        return losses
