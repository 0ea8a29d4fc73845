"""Mask2Former: queries predict (class, mask) pairs, combined into semantic scores, panoptic segments or instances."""

from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ...config import CfgNode
from ..backbone.base import Backbone
from ..build import build_backbone, build_pixel_decoder, build_transformer_decoder
from ..criterion import SetCriterion, targets_from_instances, targets_from_semantic
from ..inference import SegmentationInference
from ..matcher import HungarianMatcher
from ..postprocess import UniversalPostprocess, resize_mask_logits
from ..registry import META_ARCH_REGISTRY
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

    Panoptic / instance evaluation: ``model(batch, postprocess=UniversalPostprocess.from_config(cfg, metadata))``
    (the caller builds it, it needs the test dataset's thing classes) returns, per image, the outputs of every task
    the post-processing has on, from one decoder pass (``universal_outputs``). Without ``postprocess``, or with one
    that has only semantic on, evaluation is the semantic path of the base class, unchanged.
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
        backbone = build_backbone(cfg)
        return {
            "backbone": backbone,
            "pixel_decoder": build_pixel_decoder(cfg, backbone.output_shape()),
            "transformer_decoder": build_transformer_decoder(cfg, cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM),
            "criterion": cls.build_criterion(cfg),
            "deep_supervision": cfg.MODEL.MASK_FORMER.DEEP_SUPERVISION,
            **cls.base_config(cfg),
        }

    @staticmethod
    def build_criterion(cfg: CfgNode) -> SetCriterion:
        """Hungarian matching and point-sampled CE / BCE / dice losses over ``MODEL.SEM_SEG_HEAD.NUM_CLASSES``."""
        m = cfg.MODEL.MASK_FORMER
        matcher = HungarianMatcher(
            cost_class=m.CLASS_WEIGHT, cost_mask=m.MASK_WEIGHT, cost_dice=m.DICE_WEIGHT, num_points=m.TRAIN_NUM_POINTS
        )
        return SetCriterion(
            cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            matcher,
            {"loss_ce": m.CLASS_WEIGHT, "loss_mask": m.MASK_WEIGHT, "loss_dice": m.DICE_WEIGHT},
            eos_coef=m.NO_OBJECT_WEIGHT,
            num_points=m.TRAIN_NUM_POINTS,
            oversample_ratio=m.OVERSAMPLE_RATIO,
            importance_sample_ratio=m.IMPORTANCE_SAMPLE_RATIO,
        )

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

    def forward(
        self,
        batched_inputs: List[dict],
        postprocess: Optional[UniversalPostprocess] = None,
        inference: Optional[SegmentationInference] = None,
    ) -> object:
        """As the base class; in training, a batch whose dicts carry ``"instances"`` (the instance / panoptic
        mappers' ``{"gt_masks", "gt_classes"}``) is supervised with one target per object instead of per class;
        samples of such a batch without them (synthetic pairs) keep per-class targets (``_mixed_targets``).
        In evaluation, a ``postprocess`` with panoptic or instance on gives ``universal_outputs``; ``inference``
        overrides the test-time mode for this call, as in the base class."""
        if self.training and any("instances" in x for x in batched_inputs):
            images = self._pad_images([self._normalize(x["image"]) for x in batched_inputs])
            return self._set_losses(images, self._mixed_targets(batched_inputs, images.shape[-2:]))
        if not self.training and postprocess is not None and (postprocess.panoptic_on or postprocess.instance_on):
            return self.universal_outputs(batched_inputs, postprocess, inference)
        return super().forward(batched_inputs, inference)

    def universal_outputs(
        self,
        batched_inputs: List[dict],
        postprocess: UniversalPostprocess,
        inference: Optional[SegmentationInference] = None,
    ) -> List[Dict[str, Any]]:
        """Per image ``{"sem_seg"?: (K, H, W), "panoptic_seg"?: (int32 (H, W), segments_info), "instances"?:
        {"pred_masks": bool (N, H, W), "scores": (N,), "pred_classes": int64 (N,)}}`` at the original size
        ``(H, W) = (x["height"], x["width"])``, for the tasks ``postprocess`` has on.

        One decoder pass for the batch (images padded together to ``TEST.SIZE_DIVISIBILITY``). As official
        Mask2Former with panoptic or instance on (``sem_seg_postprocess_before_inference``:
        facebookresearch/Mask2Former, mask2former/maskformer_model.py, ``MaskFormer.from_config`` / ``forward``): each
        image's mask logits are upsampled to the padded input, cropped to the image, resized to the original size, and
        only then post-processed, so ``sem_seg`` here combines classes and masks at the original size (the semantic-only
        path combines them at the input size first). Whole-image inference only: sliding windows and test-time
        augmentation average semantic scores, which panoptic segments and instances are not.
        """
        inference = self.inference if inference is None else inference
        if inference.mode != "whole" or inference.ratios != (1.0,) or inference.flip:
            raise ValueError(
                "panoptic / instance inference is whole-image only: turn off TEST.SLIDING_WINDOW.ENABLED and "
                "TEST.AUG.ENABLED for configs with MODEL.MASK_FORMER.TEST.PANOPTIC_ON or INSTANCE_ON"
            )
        images = [self._normalize(x["image"]) for x in batched_inputs]
        batch = self._pad_images(images, inference.size_divisibility)
        outputs = self._decode(batch)
        masks = F.interpolate(
            outputs["pred_masks"].float(), size=batch.shape[-2:], mode="bilinear", align_corners=False
        )
        results = []
        for mask_cls, mask_pred, image, x in zip(outputs["pred_logits"], masks, images, batched_inputs):
            height, width = image.shape[-2:]
            mask_pred = resize_mask_logits(mask_pred[:, :height, :width], (int(x["height"]), int(x["width"])))
            results.append(postprocess(mask_cls, mask_pred))
        return results

    def losses(self, images: torch.Tensor, targets: torch.Tensor) -> Dict[str, torch.Tensor]:
        return self._set_losses(images, targets_from_semantic(targets, self.ignore_label))

    def _mixed_targets(self, batched_inputs: List[dict], size: Tuple[int, int]) -> List[dict]:
        """Per sample: one target per object where the sample has ``instances``, else one per class present in its
        ``sem_seg`` (a FreeMask synthetic pair in a panoptic / instance batch: its masks teach classes and shapes,
        a thing class as one mask covering all its objects, since a synthetic mask has no instances)."""
        return [
            targets_from_instances([x["instances"]], size, self.device)[0]
            if "instances" in x
            else self._semantic_target(x["sem_seg"], size)
            for x in batched_inputs
        ]

    def _semantic_target(self, sem_seg: torch.Tensor, size: Tuple[int, int]) -> Dict[str, torch.Tensor]:
        """One sample's per-class target from its (h, w) label map, padded with ignore to the batch ``size``."""
        sem = sem_seg.to(self.device)
        sem = F.pad(sem, (0, size[1] - sem.shape[-1], 0, size[0] - sem.shape[-2]), value=self.ignore_label)
        return targets_from_semantic(sem[None], self.ignore_label)[0]

    def _set_losses(self, images: torch.Tensor, targets: List[dict]) -> Dict[str, torch.Tensor]:
        outputs = self._decode(images)
        if not self.deep_supervision:
            outputs.pop("aux_outputs", None)
        return self.criterion.weighted(self.criterion(outputs, targets))
