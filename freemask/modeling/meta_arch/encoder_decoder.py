"""Encoder-decoder segmentors: a backbone and a per-pixel classifier head (Semantic FPN, SegFormer, Segmenter)."""

from typing import Dict

import torch
import torch.nn.functional as F
from torch import nn

from ...config import CfgNode
from ..backbone.base import Backbone
from ..build import build_backbone, build_sem_seg_head
from ..registry import META_ARCH_REGISTRY
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

    def predict_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, K, H, W)``: the head's, bilinearly upsampled to the input, as MMSegmentation's
        ``encode_decode``. A head returning ``(logits, extras)`` (SeMask's prior maps, a training signal) gives its
        logits."""
        logits = self.sem_seg_head(self.backbone(images))
        if isinstance(logits, tuple):
            logits = logits[0]
        return F.interpolate(logits.float(), size=images.shape[-2:], mode="bilinear", align_corners=False)

    def scores_from_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Softmax over classes, taken after the logits are averaged over windows and resized (MMSegmentation)."""
        return logits.softmax(dim=1)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return self.scores_from_logits(self.predict_logits(images))

    def predict_log_probs(self, images: torch.Tensor) -> torch.Tensor:
        """``log_softmax`` of the logits: the cross-entropy the official filter computes from the model's logits."""
        return self.predict_logits(images).log_softmax(dim=1)

    def losses(self, images: torch.Tensor, targets: torch.Tensor) -> Dict[str, torch.Tensor]:
        return self.sem_seg_head.losses(self.sem_seg_head(self.backbone(images)), targets)


@META_ARCH_REGISTRY.register()
class SemanticFPN(EncoderDecoder):
    """The name Semantic FPN configs use (Kirillov et al., 2019: an FPN head on a backbone); an EncoderDecoder."""
