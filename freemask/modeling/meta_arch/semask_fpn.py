"""SeMask-FPN (Jain et al., 2021): a SeMask Swin backbone (features + class prior maps per stage) and the SeMask FPN
head (Semantic-FPN towers on the features, a parameter-free decoder of the priors, CE + 0.4 x prior CE)."""

from typing import Dict

import torch
import torch.nn.functional as F
from torch import nn

from ...config import CfgNode, ConfigError
from ..backbone.base import Backbone
from ..build import META_ARCH_REGISTRY, build_backbone, build_sem_seg_head
from .base import SemanticSegmentor


@META_ARCH_REGISTRY.register()
class SeMaskFPN(SemanticSegmentor):
    """Backbone with ``forward_with_priors`` (``SeMaskSwin``) -> ``SeMaskFPNHead``. Inference uses the main logits
    only (the priors are a training signal); the helper in ``base.py`` adds sliding-window and multi-scale + flip."""

    def __init__(self, *, backbone: Backbone, sem_seg_head: nn.Module, **kwargs) -> None:
        super().__init__(**kwargs)
        if not hasattr(backbone, "forward_with_priors"):
            raise ConfigError(
                f"SeMaskFPN needs a backbone that returns class prior maps; MODEL.BACKBONE.NAME "
                f"{type(backbone).__name__} does not — use SeMaskSwin"
            )
        self.backbone = backbone
        self.sem_seg_head = sem_seg_head

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        backbone = build_backbone(cfg)
        return {
            "backbone": backbone,
            "sem_seg_head": build_sem_seg_head(cfg, backbone.output_shape()),
            **cls.base_config(cfg),
        }

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        logits, _ = self.sem_seg_head(self.backbone(images))
        logits = F.interpolate(logits.float(), size=images.shape[-2:], mode="bilinear", align_corners=False)
        return logits.softmax(dim=1)

    def losses(self, images: torch.Tensor, targets: torch.Tensor) -> Dict[str, torch.Tensor]:
        features, priors = self.backbone.forward_with_priors(images)
        return self.sem_seg_head.losses(self.sem_seg_head(features, priors), targets)
