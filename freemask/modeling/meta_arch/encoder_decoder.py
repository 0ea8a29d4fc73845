"""Encoder-decoder segmentors: a backbone and a per-pixel classifier head (Semantic FPN, SegFormer, Segmenter)."""

from typing import Dict

import torch
import torch.nn.functional as F
from torch import nn

from ...config import CfgNode
from ..backbone.base import Backbone
from ..build import META_ARCH_REGISTRY, build_backbone, build_sem_seg_head
from .base import SemanticSegmentor


@META_ARCH_REGISTRY.register()
class EncoderDecoder(SemanticSegmentor):
    """Backbone -> per-pixel head (``MODEL.SEM_SEG_HEAD.NAME``) producing logits at the head's stride, upsampled to
    the image. The head alone decides the model: SemanticFPNHead, SegFormerHead, SegmenterMaskTransformerHead."""

    def __init__(self, *, backbone: Backbone, sem_seg_head: nn.Module, **kwargs) -> None:
        super().__init__(**kwargs)
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
        logits = self.sem_seg_head(self.backbone(images))
        logits = F.interpolate(logits.float(), size=images.shape[-2:], mode="bilinear", align_corners=False)
        return logits.softmax(dim=1)

    def losses(self, images: torch.Tensor, targets: torch.Tensor) -> Dict[str, torch.Tensor]:
        return self.sem_seg_head.losses(self.sem_seg_head(self.backbone(images)), targets)


@META_ARCH_REGISTRY.register()
class SemanticFPN(EncoderDecoder):
    """The name Semantic FPN configs use (Kirillov et al., 2019: an FPN head on a backbone); an EncoderDecoder."""
