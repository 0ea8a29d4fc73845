"""Mask2Former's per-image post-processing: (class, mask) query pairs -> semantic, panoptic or instance outputs.

Each function takes one image's decoder outputs, ``mask_cls`` (Q, K + 1) class logits (the last one no-object) and
``mask_pred`` (Q, H, W) mask logits already resized to the output size (Mask2Former resizes before inference when
panoptic or instance is on, ``sem_seg_postprocess_before_inference``), and follows facebookresearch/Mask2Former,
mask2former/maskformer_model.py, ``MaskFormer.semantic_inference`` / ``panoptic_inference`` / ``instance_inference``.
The outputs are what the evaluators consume: COCO panoptic (``panoptic_seg`` + ``segments_info``) and COCO instance
(``pred_masks``, ``scores``, ``pred_classes``). FreeSeg's own rules, for its open-vocabulary model, are
freemask/modeling/open_vocab/freeseg_postprocess.py; :class:`UniversalPostprocess` names which rules run (``rule``).
"""

from dataclasses import dataclass
from typing import Any, Collection, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from ..config import CfgNode, ConfigError

SegmentsInfo = List[Dict[str, Any]]
# MODEL.MASK_FORMER.TEST.POSTPROCESS: Mask2Former's rules (this file, any mask-classification model) or FreeSeg's
# (freemask/modeling/open_vocab/freeseg_postprocess.py, the OpenVocabulary model only), as released or corrected.
MASK2FORMER, FREESEG, FREESEG_CORRECTED = "mask2former", "freeseg", "freeseg_corrected"
RULES = (MASK2FORMER, FREESEG, FREESEG_CORRECTED)


def semantic_inference(mask_cls: torch.Tensor, mask_pred: torch.Tensor) -> torch.Tensor:
    """Class scores (K, H, W): ``sum_q softmax(mask_cls)[q, c] * sigmoid(mask_pred[q])``, no-object dropped."""
    return semantic_from_probs(mask_cls.float().softmax(-1)[..., :-1], mask_pred)


def semantic_from_probs(probs: torch.Tensor, mask_pred: torch.Tensor) -> torch.Tensor:
    """Class scores (K, H, W) from per-query class probabilities ``probs`` (Q, K): ``sum_q probs[q, c] *
    sigmoid(mask_pred[q])``. The entry point for a model whose probabilities are not one softmax of logits
    (FreeSeg's CLIP ensemble)."""
    return torch.einsum("qc,qhw->chw", probs.float(), mask_pred.float().sigmoid())


def panoptic_inference(
    mask_cls: torch.Tensor,
    mask_pred: torch.Tensor,
    thing_ids: Collection[int],
    object_mask_threshold: float = 0.0,
    overlap_threshold: float = 0.0,
) -> Tuple[torch.Tensor, SegmentsInfo]:
    """Non-overlapping segments: ``panoptic_seg`` int32 (H, W) (0 = void, segment ids from 1) and ``segments_info``
    ``[{"id", "isthing", "category_id"}]`` with contiguous category ids; ``thing_ids`` = the contiguous ids of the
    thing classes (metadata ``thing_dataset_id_to_contiguous_id.values()``).

    Mask2Former's ``panoptic_inference``: a query is kept when its most probable class over K + 1 is not no-object and
    that probability exceeds ``object_mask_threshold``; each pixel goes to the kept query with the largest
    ``prob * sigmoid(mask)``. A kept query then becomes a segment of the pixels it won where its own sigmoid >= 0.5,
    unless it won nothing, its own mask is empty, or it kept less than ``overlap_threshold`` of its own mask
    (``won / own``); a stuff class already placed absorbs later queries of that class into its segment.
    """
    num_classes = mask_cls.shape[-1] - 1
    scores, labels = mask_cls.float().softmax(-1).max(-1)
    keep = labels.ne(num_classes) & (scores > object_mask_threshold)
    return panoptic_segments(scores, labels, keep, mask_pred, thing_ids, overlap_threshold)


def panoptic_segments(
    scores: torch.Tensor,
    labels: torch.Tensor,
    keep: torch.Tensor,
    mask_pred: torch.Tensor,
    thing_ids: Collection[int],
    overlap_threshold: float = 0.0,
) -> Tuple[torch.Tensor, SegmentsInfo]:
    """:func:`panoptic_inference` from each query's ``scores`` (Q,), class ``labels`` (Q,) int64 and which queries
    to ``keep`` (bool (Q,)), chosen by the caller: the entry point for a model whose scores are not one softmax of
    logits (FreeSeg's sharpened ensemble). Pixels go to the kept query with the largest ``score * sigmoid(mask)``;
    the segment rules are those of :func:`panoptic_inference`."""
    masks = mask_pred.float().sigmoid()
    cur_scores, cur_classes, cur_masks = scores[keep], labels[keep], masks[keep]
    panoptic_seg = torch.zeros(mask_pred.shape[-2:], dtype=torch.int32, device=mask_pred.device)
    segments_info: SegmentsInfo = []
    if cur_masks.shape[0] == 0:
        return panoptic_seg, segments_info
    cur_mask_ids = (cur_scores.view(-1, 1, 1) * cur_masks).argmax(0)
    thing_ids = {int(i) for i in thing_ids}
    stuff_segment: Dict[int, int] = {}  # stuff class -> its segment id
    segment_id = 0
    for k in range(cur_classes.shape[0]):
        pred_class = int(cur_classes[k])
        isthing = pred_class in thing_ids
        won = cur_mask_ids == k
        own = cur_masks[k] >= 0.5
        mask = won & own
        mask_area, original_area = int(won.sum()), int(own.sum())
        if mask_area == 0 or original_area == 0 or not bool(mask.any()):
            continue
        if mask_area / original_area < overlap_threshold:
            continue
        if not isthing and pred_class in stuff_segment:
            panoptic_seg[mask] = stuff_segment[pred_class]
            continue
        segment_id += 1
        if not isthing:
            stuff_segment[pred_class] = segment_id
        panoptic_seg[mask] = segment_id
        segments_info.append({"id": segment_id, "isthing": isthing, "category_id": pred_class})
    return panoptic_seg, segments_info


def instance_inference(
    mask_cls: torch.Tensor,
    mask_pred: torch.Tensor,
    topk: int = 100,
    thing_ids: Collection[int] = (),
    things_only: bool = False,
) -> Dict[str, torch.Tensor]:
    """Scored, possibly overlapping instances: ``pred_masks`` bool (N, H, W), ``scores`` (N,), ``pred_classes``
    int64 (N,), sorted by class probability.

    Mask2Former's ``instance_inference``: the top ``topk`` of all Q x K (query, class) probabilities (no-object
    dropped; a query may come back with several classes), class = index mod K, query = index div K; with ``things_only``
    (Mask2Former: when panoptic is on) pairs whose class is not in ``thing_ids`` are dropped. Mask = logit > 0;
    score = class probability x the mean sigmoid inside the mask (0 for an empty mask). Mask2Former's
    ``topk(sorted=False)`` order is unspecified; sorting changes nothing an evaluator sees.
    """
    return instance_from_probs(mask_cls.float().softmax(-1)[:, :-1], mask_pred, topk, thing_ids, things_only)


def instance_from_probs(
    probs: torch.Tensor,
    mask_pred: torch.Tensor,
    topk: int = 100,
    thing_ids: Collection[int] = (),
    things_only: bool = False,
) -> Dict[str, torch.Tensor]:
    """:func:`instance_inference` from per-query class probabilities ``probs`` (Q, K) (no no-object column): the
    entry point for a model whose probabilities are not one softmax of logits (FreeSeg's sharpened ensemble)."""
    num_classes = probs.shape[-1]
    probs = probs.float().flatten()  # (Q * K,), index = query * K + class
    k = min(topk, probs.numel())
    class_scores, index = probs.topk(k, sorted=True)
    classes = index % num_classes
    queries = index // num_classes
    if things_only:
        thing = torch.tensor(sorted({int(i) for i in thing_ids}), dtype=classes.dtype, device=classes.device)
        keep = torch.isin(classes, thing)
        class_scores, classes, queries = class_scores[keep], classes[keep], queries[keep]
    logits = mask_pred[queries].float()  # (N, H, W)
    masks = logits > 0
    inside = masks.flatten(1).float()
    mask_scores = (logits.sigmoid().flatten(1) * inside).sum(1) / (inside.sum(1) + 1e-6)
    return {"pred_masks": masks, "scores": class_scores * mask_scores, "pred_classes": classes.to(torch.int64)}


@dataclass(frozen=True)
class UniversalPostprocess:
    """Which outputs one image's (``mask_cls``, ``mask_pred``) yields, and the settings of each.

    Built ``from_config(cfg, metadata)``; called on one image it returns a dict with ``"sem_seg"`` (K, H, W),
    ``"panoptic_seg"`` (``panoptic_seg``, ``segments_info``) and ``"instances"`` for the tasks that are on, the keys
    Mask2Former's model returns. ``mask_pred`` must already be at the output size. ``rule`` names whose rules run
    (``RULES``); only Mask2Former's are callable here, the OpenVocabulary model applies FreeSeg's itself.
    """

    semantic_on: bool = True
    instance_on: bool = False
    panoptic_on: bool = False
    object_mask_threshold: float = 0.0
    overlap_threshold: float = 0.0
    detections_per_image: int = 100
    thing_ids: Tuple[int, ...] = ()
    rule: str = MASK2FORMER

    @classmethod
    def from_config(
        cls, cfg: CfgNode, metadata: Any = None, thing_ids: Optional[Sequence[int]] = None
    ) -> "UniversalPostprocess":
        """Keys ``MODEL.MASK_FORMER.TEST.*`` and ``TEST.DETECTIONS_PER_IMAGE``; the thing classes are the values of
        the metadata's ``thing_dataset_id_to_contiguous_id`` (needed when panoptic or instance is on), unless
        ``thing_ids`` gives them (an open-vocabulary model's vocabulary knows its own)."""
        t = cfg.MODEL.MASK_FORMER.TEST
        mapping = metadata.get("thing_dataset_id_to_contiguous_id") if metadata is not None else None
        if thing_ids is not None:
            mapping = {i: int(i) for i in thing_ids}
        if (t.PANOPTIC_ON or t.INSTANCE_ON) and mapping is None:
            name = getattr(metadata, "name", "the test dataset")
            raise ConfigError(
                f"MODEL.MASK_FORMER.TEST.PANOPTIC_ON / INSTANCE_ON need the thing classes, but the metadata of {name} "
                f"has no 'thing_dataset_id_to_contiguous_id'; register the dataset with it or turn both off"
            )
        if not (t.SEMANTIC_ON or t.INSTANCE_ON or t.PANOPTIC_ON):
            raise ConfigError("MODEL.MASK_FORMER.TEST: SEMANTIC_ON, INSTANCE_ON and PANOPTIC_ON all off; turn one on")
        if t.POSTPROCESS not in RULES:
            raise ConfigError(
                f"MODEL.MASK_FORMER.TEST.POSTPROCESS is {t.POSTPROCESS!r}; choose one of {', '.join(RULES)}"
            )
        return cls(
            semantic_on=t.SEMANTIC_ON,
            instance_on=t.INSTANCE_ON,
            panoptic_on=t.PANOPTIC_ON,
            object_mask_threshold=t.OBJECT_MASK_THRESHOLD,
            overlap_threshold=t.OVERLAP_THRESHOLD,
            detections_per_image=cfg.TEST.DETECTIONS_PER_IMAGE,
            thing_ids=tuple(sorted(int(v) for v in (mapping or {}).values())),
            rule=t.POSTPROCESS,
        )

    def __call__(self, mask_cls: torch.Tensor, mask_pred: torch.Tensor) -> Dict[str, Any]:
        if self.rule != MASK2FORMER:
            raise ConfigError(
                f"MODEL.MASK_FORMER.TEST.POSTPROCESS {self.rule!r} is FreeSeg's post-processing, which only "
                f"META_ARCHITECTURE OpenVocabulary runs; set POSTPROCESS {MASK2FORMER!r} for this model"
            )
        out: Dict[str, Any] = {}
        if self.semantic_on:
            out["sem_seg"] = semantic_inference(mask_cls, mask_pred)
        if self.panoptic_on:
            out["panoptic_seg"] = panoptic_inference(
                mask_cls, mask_pred, self.thing_ids, self.object_mask_threshold, self.overlap_threshold
            )
        if self.instance_on:
            out["instances"] = instance_inference(
                mask_cls, mask_pred, self.detections_per_image, self.thing_ids, things_only=self.panoptic_on
            )
        return out


def resize_mask_logits(mask_pred: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """(Q, h, w) mask logits bilinearly resized to ``size`` (Mask2Former's upsampling before post-processing)."""
    return F.interpolate(mask_pred[None].float(), size=size, mode="bilinear", align_corners=False)[0]
