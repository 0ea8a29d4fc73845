"""SeMask-FPN (Jain et al., 2021): a SeMask Swin backbone (features + class prior maps per stage) and the SeMask FPN
head (Semantic-FPN towers on the features, a parameter-free decoder of the priors, CE + 0.4 x prior CE)."""

from typing import Dict

import torch
from torch import nn

from ...config import ConfigError
from ..backbone.base import Backbone
from ..registry import META_ARCH_REGISTRY
from .encoder_decoder import EncoderDecoder


@META_ARCH_REGISTRY.register()
class SeMaskFPN(EncoderDecoder):
    """Backbone with ``forward_with_priors`` (``SeMaskSwin``) -> ``SeMaskFPNHead``. Built like an EncoderDecoder;
    inference is ``EncoderDecoder``'s on the head's main logits (the priors are a training signal)."""

    def __init__(self, *, backbone: Backbone, sem_seg_head: nn.Module, **kwargs) -> None:
        if not hasattr(backbone, "forward_with_priors"):
            raise ConfigError(
                f"SeMaskFPN needs a backbone that returns class prior maps; MODEL.BACKBONE.NAME "
                f"{type(backbone).__name__} does not — use SeMaskSwin"
            )
        head_classes = sem_seg_head.conv_seg.out_channels
        if backbone.num_classes != head_classes:
            raise ConfigError(
                f"MODEL.BACKBONE.SEMASK.NUM_CLASSES {backbone.num_classes} differs from MODEL.SEM_SEG_HEAD.NUM_CLASSES "
                f"{head_classes}: the prior maps learn the same labels as the head; set it to 0 (the head's classes)"
            )
        super().__init__(backbone=backbone, sem_seg_head=sem_seg_head, **kwargs)

    def losses(self, images: torch.Tensor, targets: torch.Tensor) -> Dict[str, torch.Tensor]:
        features, priors = self.backbone.forward_with_priors(images)
        return self.sem_seg_head.losses(self.sem_seg_head(features, priors), targets)
