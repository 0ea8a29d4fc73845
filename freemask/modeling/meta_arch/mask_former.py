"""Mask2Former for semantic segmentation: queries predict (class, mask) pairs, combined into per-pixel scores."""

from typing import Dict, List

import torch
import torch.nn.functional as F
from torch import nn

from ...config import CfgNode
from ..backbone.base import Backbone
from ..build import META_ARCH_REGISTRY, build_backbone, build_pixel_decoder, build_transformer_decoder
from ..criterion import SetCriterion, targets_from_instances, targets_from_semantic
from ..matcher import HungarianMatcher
from .base import SemanticSegmentor


@META_ARCH_REGISTRY.register()
class MaskFormer(SemanticSegmentor):
    """Backbone -> pixel decoder (mask features + multi-scale memory) -> masked-attention transformer decoder.

    Training turns each label map into one binary mask per present class and trains the set prediction with
    Hungarian matching (``criterion``). Inference scores class ``c`` at a pixel as
    ``sum_q softmax(class_q)[c] * sigmoid(mask_q)(pixel)``, the no-object probability left out. These scores do not
    sum to 1 over classes (a pixel no query covers scores near 0 everywhere), so the inherited
    ``predict_log_probs`` normalises them over classes before the log: the FreeMask filter then sees such a pixel as
    uncertain (high cross-entropy) rather than as an arbitrary logit.
    """

    def __init__(
        self,
        *,
        backbone: Backbone,
        pixel_decoder: nn.Module,
        transformer_decoder: nn.Module,
        criterion: SetCriterion,
        deep_supervision: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.deep_supervision = deep_supervision
        self.backbone = backbone
        self.pixel_decoder = pixel_decoder
        self.transformer_decoder = transformer_decoder
        self.criterion = criterion

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        m = cfg.MODEL.MASK_FORMER
        backbone = build_backbone(cfg)
        matcher = HungarianMatcher(
            cost_class=m.CLASS_WEIGHT, cost_mask=m.MASK_WEIGHT, cost_dice=m.DICE_WEIGHT, num_points=m.TRAIN_NUM_POINTS
        )
        criterion = SetCriterion(
            cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            matcher,
            {"loss_ce": m.CLASS_WEIGHT, "loss_mask": m.MASK_WEIGHT, "loss_dice": m.DICE_WEIGHT},
            eos_coef=m.NO_OBJECT_WEIGHT,
            num_points=m.TRAIN_NUM_POINTS,
            oversample_ratio=m.OVERSAMPLE_RATIO,
            importance_sample_ratio=m.IMPORTANCE_SAMPLE_RATIO,
        )
        return {
            "backbone": backbone,
            "pixel_decoder": build_pixel_decoder(cfg, backbone.output_shape()),
            "transformer_decoder": build_transformer_decoder(cfg, cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM),
            "criterion": criterion,
            "deep_supervision": m.DEEP_SUPERVISION,
            **cls.base_config(cfg),
        }

    def _decode(self, images: torch.Tensor) -> dict:
        mask_features, _, multi_scale = self.pixel_decoder.forward_features(self.backbone(images))
        return self.transformer_decoder(multi_scale, mask_features)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Scores ``(N, K, H, W)``, also what test-time inference averages and resizes (``predict_logits``).

        As official Mask2Former's ``semantic_inference``: masks are upsampled to the (padded) input, passed through a
        sigmoid and combined with the class probabilities there; the caller crops the padding and resizes the
        combined scores to the original image (``sem_seg_postprocess``), and its test-time augmentation averages
        these scores, with no softmax over classes.
        """
        outputs = self._decode(images)
        classes = outputs["pred_logits"].float().softmax(-1)[..., :-1]  # (N, Q, K)
        masks = F.interpolate(
            outputs["pred_masks"].float(), size=images.shape[-2:], mode="bilinear", align_corners=False
        )
        return torch.einsum("nqk,nqhw->nkhw", classes, masks.sigmoid())

    def forward(self, batched_inputs: List[dict]) -> object:
        """As the base class; in training, a batch whose dicts carry ``"instances"`` (the instance / panoptic
        mappers' ``{"gt_masks", "gt_classes"}``) is supervised with one target per object instead of per class."""
        if self.training and "instances" in batched_inputs[0]:
            images = self._pad_images([self._normalize(x["image"]) for x in batched_inputs])
            targets = targets_from_instances([x["instances"] for x in batched_inputs], images.shape[-2:], self.device)
            return self._set_losses(images, targets)
        return super().forward(batched_inputs)

    def losses(self, images: torch.Tensor, targets: torch.Tensor) -> Dict[str, torch.Tensor]:
        return self._set_losses(images, targets_from_semantic(targets, self.ignore_value))

    def _set_losses(self, images: torch.Tensor, targets: List[dict]) -> Dict[str, torch.Tensor]:
        outputs = self._decode(images)
        if not self.deep_supervision:
            outputs.pop("aux_outputs", None)
        return self.criterion.weighted(self.criterion(outputs, targets))
