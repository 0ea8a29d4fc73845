"""FreeSeg's panoptic and instance rules, beside Mask2Former's (freemask/modeling/postprocess.py).

What bytedance/FreeSeg, mask2former/open_vocabulary_model.py, ``OpenVocabulary.panoptic_inference`` and
``OpenVocabulary.instance_inference`` compute from one image's ensembled class probabilities ``probs`` (Q, K) and mask
logits ``mask_pred`` (Q, h, w) at the INPUT size (upsampled with ``align_corners=True`` and cropped, see
``OpenVocabulary.forward``); the outputs are then resized to the original size by nearest neighbour
(:func:`resize_panoptic`, :func:`resize_instances`, as its forward does with detectron2's
``ResizeTransform.apply_segmentation``). Both rules start from the semantic map ``argmax_c sum_q probs * sigmoid``
and FreeSeg's sharpened scores ``softmax(probs / 0.01)``; unlike Mask2Former's, a segment is the pixels where its own
mask is on AND the semantic map names its class, and no pixel assignment between queries is made (a later segment
paints over an earlier one).

``corrected=False`` (MODEL.MASK_FORMER.TEST.POSTPROCESS "freeseg") reproduces the released code, bugs included, as far
as its published protocol (all-task configs, panoptic on) depends on them; ``corrected=True`` ("freeseg_corrected")
fixes three plain bugs:

- the panoptic pass drops queries whose label equals the TRAINING class count (``sem_seg_head.num_classes``): meant
  as a no-object test, it never fires when the test vocabulary is no larger than the training one and drops a valid
  class when it is larger. Corrected: no such test (the ensemble's probabilities have no no-object column).
- the instance pass drops the last column of probabilities whose no-object column is already gone, so the last class
  of the vocabulary is never an instance. Corrected: every class is kept.
- the instance duplicate suppression groups the kept queries by ``lab``, the loop variable of the thing filter before
  it: one tensor object whatever the query's class, so all kept queries form ONE group (without panoptic on, ``lab``
  is undefined and the released code fails as soon as one query is kept). Corrected: one group per class.
"""

from functools import lru_cache
from typing import Any, Collection, Dict, List, Tuple

import numpy as np
import torch
from PIL import Image

from ..postprocess import SegmentsInfo
from .ensemble import sharpen

# FreeSeg's hard-coded thresholds: the sharpened score a thing segment (panoptic) and an instance need, the
# fraction of the largest kept instance that the others' union must exceed for it to be dropped as a duplicate.
SCORE_THRESHOLD = 0.5
DUPLICATE_COVER_THRESHOLD = 0.8


def _semantic_map(probs: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(h, w) class ids: ``argmax_c sum_q probs[q, c] * masks[q]`` (``masks`` already sigmoid-ed)."""
    return torch.einsum("qc,qhw->chw", probs, masks).argmax(0)


def freeseg_panoptic(
    probs: torch.Tensor,
    mask_pred: torch.Tensor,
    thing_ids: Collection[int],
    num_train_classes: int,
    overlap_threshold: float,
    corrected: bool = False,
) -> Tuple[torch.Tensor, SegmentsInfo]:
    """FreeSeg's ``panoptic_inference``: ``panoptic_seg`` int32 (h, w) (0 = void) and its ``segments_info``.

    Query ``q`` (in query order) with label ``c`` = argmax of its sharpened scores becomes the segment
    ``sigmoid(mask_q) >= 0.5 & semantic_map == c`` unless that is empty, its own mask is empty, it keeps less than
    ``overlap_threshold`` of its own mask, or ``c`` is a thing and its sharpened score is below 0.5; a stuff class
    already placed paints its later queries with its first segment id. Segments may overlap: the later one wins
    the pixels, and an id painted over everywhere stays in ``segments_info`` until :func:`resize_panoptic` drops it.
    """
    probs, masks = probs.float(), mask_pred.float().sigmoid()
    semantic_map = _semantic_map(probs, masks)
    scores, labels = sharpen(probs).max(-1)
    keep = torch.ones_like(labels, dtype=torch.bool) if corrected else labels.ne(num_train_classes)
    scores, labels, masks = scores[keep], labels[keep], masks[keep]
    things = {int(i) for i in thing_ids}
    panoptic_seg = torch.zeros(mask_pred.shape[-2:], dtype=torch.int32, device=mask_pred.device)
    segments_info: SegmentsInfo = []
    stuff_segment: Dict[int, int] = {}
    for score, label, mask_prob in zip(scores.tolist(), labels.tolist(), masks):
        own = mask_prob >= 0.5
        segment = own & (semantic_map == label)
        original_area, area = int(own.sum()), int(segment.sum())
        if original_area == 0 or area == 0 or area / original_area < overlap_threshold:
            continue
        isthing = label in things
        if isthing and score < SCORE_THRESHOLD:
            continue
        if not isthing and label in stuff_segment:
            panoptic_seg[segment] = stuff_segment[label]
            continue
        segment_id = len(segments_info) + 1
        if not isthing:
            stuff_segment[label] = segment_id
        panoptic_seg[segment] = segment_id
        segments_info.append({"id": segment_id, "isthing": isthing, "category_id": label})
    return panoptic_seg, segments_info


def freeseg_instances(
    probs: torch.Tensor,
    mask_pred: torch.Tensor,
    thing_ids: Collection[int],
    overlap_threshold: float,
    corrected: bool = False,
) -> Dict[str, torch.Tensor]:
    """FreeSeg's ``instance_inference``: ``pred_masks`` bool (N, h, w), ``scores`` (N,), ``pred_classes`` (N,), in
    query order, no top-k.

    Each query's class is the argmax of its sharpened scores (the last class's column dropped unless ``corrected``);
    queries of a non-thing class are dropped (FreeSeg does so with panoptic on, the only setting its code runs in).
    A query is kept when its score > 0.5 and ``M & semantic_map == class`` is not empty and covers more than
    ``overlap_threshold`` of ``M``, where ``M`` is its mask LOGIT >= 0.5 (not its sigmoid). Then, per group of kept
    queries (one group, or one per class when ``corrected``), the largest ``M`` is dropped when the union of the
    group's other ``M`` exceeds 0.8 of its area. Output mask = logit > 0, score = sharpened score x the mean sigmoid
    inside it.
    """
    probs, mask_pred = probs.float(), mask_pred.float()
    semantic_map = _semantic_map(probs, mask_pred.sigmoid())
    sharpened = sharpen(probs)
    if not corrected:
        sharpened = sharpened[:, :-1]
    if sharpened.shape[-1] == 0:  # a one-class vocabulary less its last class: nothing to label
        empty = torch.zeros(0, device=mask_pred.device)
        masks = torch.zeros(0, *mask_pred.shape[-2:], dtype=torch.bool, device=mask_pred.device)
        return {"pred_masks": masks, "scores": empty, "pred_classes": empty.long()}
    scores, labels = sharpened.max(-1)
    thing = torch.tensor(sorted({int(i) for i in thing_ids}), dtype=labels.dtype, device=labels.device)
    is_thing = torch.isin(labels, thing)
    scores, labels, mask_pred = scores[is_thing], labels[is_thing], mask_pred[is_thing]
    on = mask_pred >= 0.5  # FreeSeg's M: the logits thresholded at 0.5
    keep = torch.zeros_like(labels, dtype=torch.bool)
    groups: Dict[int, List[int]] = {}
    for k, (score, label) in enumerate(zip(scores.tolist(), labels.tolist())):
        original_area = int(on[k].sum())
        area = int((on[k] & (semantic_map == label)).sum())
        if area > 0 and original_area > 0 and score > SCORE_THRESHOLD and area / original_area > overlap_threshold:
            keep[k] = True
            groups.setdefault(label if corrected else 0, []).append(k)
    for members in groups.values():
        areas = [int(on[k].sum()) for k in members]
        largest = int(np.argmax(areas))
        others = torch.zeros_like(on[0])
        for i, k in enumerate(members):
            if i != largest:
                others |= on[k]
        if int(others.sum()) / areas[largest] > DUPLICATE_COVER_THRESHOLD:
            keep[members[largest]] = False
    logits = mask_pred[keep]
    masks = logits > 0
    inside = masks.flatten(1).float()
    mask_scores = (logits.sigmoid().flatten(1) * inside).sum(1) / (inside.sum(1) + 1e-6)
    return {"pred_masks": masks, "scores": scores[keep] * mask_scores, "pred_classes": labels[keep].to(torch.int64)}


@lru_cache(maxsize=64)
def _pil_nearest_index(in_size: int, out_size: int, axis: int) -> torch.Tensor:
    """The source index of each output row (axis 0) or column (axis 1) of PIL's nearest-neighbour resize.

    PIL accumulates the scale in floating point (``ImagingScaleAffine``), so the index is not always torch's
    ``nearest-exact``; asking PIL itself for an ``arange`` resized gives exactly its choice."""
    line = np.arange(in_size, dtype=np.int32)
    line = line[:, None] if axis == 0 else line[None, :]
    size = (1, out_size) if axis == 0 else (out_size, 1)  # PIL sizes are (width, height)
    resized = np.asarray(Image.fromarray(line).resize(size, Image.NEAREST))
    return torch.from_numpy(resized.reshape(-1).astype(np.int64))


def resize_nearest(maps: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """(..., h, w) -> (..., H, W) by PIL's nearest neighbour, as detectron2's ``ResizeTransform.apply_segmentation``
    resizes uint8 maps (FreeSeg's panoptic ids and instance masks), for any dtype and device."""
    h, w = maps.shape[-2:]
    if (h, w) == tuple(size):
        return maps
    rows = _pil_nearest_index(h, int(size[0]), 0).to(maps.device)
    cols = _pil_nearest_index(w, int(size[1]), 1).to(maps.device)
    return maps.index_select(-2, rows).index_select(-1, cols)


def resize_panoptic(
    panoptic: Tuple[torch.Tensor, SegmentsInfo], size: Tuple[int, int]
) -> Tuple[torch.Tensor, SegmentsInfo]:
    """FreeSeg's forward after ``panoptic_inference``: the id map resized by nearest neighbour, and only the segments
    whose id is still present afterwards."""
    panoptic_seg, segments_info = panoptic
    panoptic_seg = resize_nearest(panoptic_seg, size)
    present = set(panoptic_seg.unique().tolist())
    return panoptic_seg, [s for s in segments_info if s["id"] in present]


def resize_instances(instances: Dict[str, Any], size: Tuple[int, int]) -> Dict[str, Any]:
    """FreeSeg's forward after ``instance_inference``: masks resized by nearest neighbour, scores unchanged (they were
    measured at the input size)."""
    return {**instances, "pred_masks": resize_nearest(instances["pred_masks"], size)}
