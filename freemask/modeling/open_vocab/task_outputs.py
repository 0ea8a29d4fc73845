"""One image's panoptic or instance output of the OpenVocabulary model, by the rule its post-processing names
(MODEL.MASK_FORMER.TEST.POSTPROCESS): FreeSeg's (freeseg_postprocess.py, at the input size, then resized) or
Mask2Former's (freemask/modeling/postprocess.py, at the output size), both from the CLIP-ensembled probabilities."""

from typing import Any, Collection, Tuple

import torch

from ..postprocess import FREESEG_CORRECTED, UniversalPostprocess, instance_from_probs, panoptic_segments
from .ensemble import sharpen
from .freeseg_postprocess import freeseg_instances, freeseg_panoptic, resize_instances, resize_panoptic


def freeseg_output(
    key: str,
    probs: torch.Tensor,
    mask_pred: torch.Tensor,
    size: Tuple[int, int],
    postprocess: UniversalPostprocess,
    thing_ids: Collection[int],
    num_train_classes: int,
) -> Any:
    """``key`` "panoptic_seg" or "instances" by FreeSeg's rules from (Q, K) probabilities and (Q, h, w) mask logits
    at the input size, resized to ``size`` by nearest neighbour; ``num_train_classes`` is the training vocabulary's
    size, which FreeSeg's released panoptic rule compares labels with."""
    corrected = postprocess.rule == FREESEG_CORRECTED
    overlap = postprocess.overlap_threshold
    if key == "panoptic_seg":
        return resize_panoptic(
            freeseg_panoptic(probs, mask_pred, thing_ids, num_train_classes, overlap, corrected), size
        )
    return resize_instances(freeseg_instances(probs, mask_pred, thing_ids, overlap, corrected), size)


def mask2former_output(
    key: str,
    mask_cls: torch.Tensor,
    probs: torch.Tensor,
    mask_pred: torch.Tensor,
    postprocess: UniversalPostprocess,
    thing_ids: Collection[int],
) -> Any:
    """``key`` "panoptic_seg" or "instances" by Mask2Former's rules from the mask classifier's (Q, K + 1) logits
    ``mask_cls`` (its no-object test), (Q, K) probabilities and (Q, H, W) mask logits at the output size, scored by
    FreeSeg's sharpened probabilities; instances are the vocabulary's things only."""
    sharpened = sharpen(probs)
    if key == "panoptic_seg":
        scores, labels = sharpened.max(-1)
        keep = mask_cls.argmax(-1).ne(mask_cls.shape[-1] - 1) & (scores > postprocess.object_mask_threshold)
        return panoptic_segments(scores, labels, keep, mask_pred, thing_ids, postprocess.overlap_threshold)
    return instance_from_probs(sharpened, mask_pred, postprocess.detections_per_image, thing_ids, things_only=True)
