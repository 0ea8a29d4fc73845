"""COCO panoptic quality (PQ, SQ, RQ) following panopticapi's rules, in numpy, written for this project.

The rules (Kirillov et al., "Panoptic Segmentation", and panopticapi's ``pq_compute_single_core``):

- id 0 is VOID in both maps. A ground-truth (GT) segment and a predicted segment of the same category match when
  their IoU is strictly greater than 0.5, with ``union = |pred| + |gt| - |pred ∩ gt| - |pred ∩ GT-void|``: the part
  of a prediction lying on GT void is left out of the union (it is neither right nor wrong). Pixels of a GT segment
  that the prediction leaves void stay in the union (torchmetrics also removes those; panopticapi does not).
- GT ``iscrowd`` segments never match. An unmatched non-crowd GT segment is a false negative (FN).
- An unmatched prediction is a false positive (FP) unless more than half of its area lies on GT void plus the GT
  crowd region(s) of its own category.
- Per class: ``PQ = ΣIoU / (TP + FP/2 + FN/2)``, ``SQ = ΣIoU / TP``, ``RQ = TP / (TP + FP/2 + FN/2)``; the All /
  Things / Stuff values are unweighted means over the classes of that group with ``TP + FP + FN > 0``.

Two deliberate details: GT areas are counted in the PNG (panopticapi takes them from the JSON's ``area``; COCO's and
ADE20K's JSON areas are those pixel counts, so the results agree), and when one image has several crowd segments of
one category all of them absorb (panopticapi keeps the last one; COCO's format merges crowds per category).

Statistics are per category and additive: TP/FP/FN are integers and the IoU sum is kept in fixed point
(``IOU_SCALE`` units per IoU, rounded exactly in integer arithmetic), so merging per-image or per-rank statistics is
exact and independent of order; the rounding costs at most ``0.5 / IOU_SCALE`` (1.2e-10) per matched pair.
"""

from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, Iterable, Mapping, Optional, Sequence

import numpy as np

VOID = 0
IOU_SCALE = 1 << 32
_GROUPS = (("", None), ("_th", True), ("_st", False))  # result-key suffix, isthing filter (None: every class)


@dataclass
class CategoryStat:
    """Counts of one category; ``iou_fixed`` is ΣIoU of its true positives in units of ``1 / IOU_SCALE``."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    iou_fixed: int = 0

    @property
    def iou_sum(self) -> float:
        return self.iou_fixed / IOU_SCALE


class PQStat:
    """Per-category TP/FP/FN and IoU sums; ``a + b`` merges two sets of images exactly."""

    def __init__(self) -> None:
        self.categories: Dict[int, CategoryStat] = {}

    def __getitem__(self, category_id: int) -> CategoryStat:
        if category_id not in self.categories:
            self.categories[category_id] = CategoryStat()
        return self.categories[category_id]

    def __iadd__(self, other: "PQStat") -> "PQStat":
        for cat, s in other.categories.items():
            mine = self[cat]
            mine.tp += s.tp
            mine.fp += s.fp
            mine.fn += s.fn
            mine.iou_fixed += s.iou_fixed
        return self

    def __add__(self, other: "PQStat") -> "PQStat":
        out = PQStat()
        out += self
        out += other
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PQStat):
            return NotImplemented
        nonzero = lambda s: {c: v for c, v in s.categories.items() if v != CategoryStat()}  # noqa: E731
        return nonzero(self) == nonzero(other)

    def __repr__(self) -> str:
        return f"PQStat({dict(sorted(self.categories.items()))})"


def _fixed_iou(intersection: int, union: int) -> int:
    """round(intersection / union * IOU_SCALE), exactly (half up), in Python integers."""
    return (2 * intersection * IOU_SCALE + union) // (2 * union)


def pq_stat_single_image(
    gt_ids: np.ndarray,
    gt_segments: Sequence[Mapping],
    pred_ids: np.ndarray,
    pred_segments: Sequence[Mapping],
) -> PQStat:
    """Matching statistics of one image.

    Args:
        gt_ids: int ``(H, W)`` GT segment ids, 0 = void.
        gt_segments: ``{"id", "category_id", "iscrowd" (optional, 0)}`` for every GT id; a segment listed but absent
            from the map is an FN (as in panopticapi).
        pred_ids: int ``(H, W)`` predicted segment ids, 0 = void.
        pred_segments: ``{"id", "category_id"}`` for every non-zero id of ``pred_ids``.

    Category ids must be one id space for both (the caller checks them against the dataset's categories). Raises
    ValueError when the maps differ in shape, ids are not listed, or a listed prediction has no pixel.
    """
    gt_ids = np.asarray(gt_ids).astype(np.int64, copy=False)
    pred_ids = np.asarray(pred_ids).astype(np.int64, copy=False)
    if gt_ids.shape != pred_ids.shape or gt_ids.ndim != 2:
        raise ValueError(f"prediction of shape {pred_ids.shape} for a ground truth of shape {gt_ids.shape}")
    gt_info = {int(s["id"]): s for s in gt_segments}
    pred_info = {int(s["id"]): s for s in pred_segments}
    if VOID in gt_info or VOID in pred_info:
        raise ValueError("segment id 0 is void and cannot be listed in segments_info")

    # Each map as indices into its sorted list of ids (0 first), then one bincount over (gt index, pred index):
    # the joint histogram gives every intersection and, summed, every area. O(pixels · log segments), no sort.
    gt_keys, gt_index = _index_ids(gt_ids, gt_info, "ground-truth")
    pred_keys, pred_index = _index_ids(pred_ids, pred_info, "predicted")
    joint = np.bincount((gt_index * len(pred_keys) + pred_index).ravel(), minlength=len(gt_keys) * len(pred_keys))
    joint = joint.reshape(len(gt_keys), len(pred_keys))
    gt_area = dict(zip(gt_keys.tolist(), joint.sum(axis=1).tolist()))
    pred_area = dict(zip(pred_keys.tolist(), joint.sum(axis=0).tolist()))
    empty = sorted(p for p in pred_info if pred_area[p] == 0)
    if empty:
        raise ValueError(f"predicted segment ids {empty} are in segments_info but have no pixel")
    rows, cols = np.nonzero(joint)
    inter = {(int(gt_keys[r]), int(pred_keys[c])): int(n) for r, c, n in zip(rows, cols, joint[rows, cols].tolist())}

    stat = PQStat()
    gt_matched, pred_matched = set(), set()
    for (g, p), n in inter.items():
        if g == VOID or p == VOID:
            continue
        gs, ps = gt_info[g], pred_info[p]
        if gs.get("iscrowd", 0) or gs["category_id"] != ps["category_id"]:
            continue
        union = pred_area[p] + gt_area[g] - n - inter.get((VOID, p), 0)
        if 2 * n > union:  # IoU > 0.5, decided on integers (an IoU of exactly 0.5 does not match)
            s = stat[gs["category_id"]]
            s.tp += 1
            s.iou_fixed += _fixed_iou(n, union)
            gt_matched.add(g)
            pred_matched.add(p)

    crowd_by_category: Dict[int, list] = {}
    for g, gs in gt_info.items():
        if g in gt_matched:
            continue
        if gs.get("iscrowd", 0):
            crowd_by_category.setdefault(gs["category_id"], []).append(g)
        else:
            stat[gs["category_id"]].fn += 1

    for p, ps in pred_info.items():
        if p in pred_matched:
            continue
        ignored = inter.get((VOID, p), 0)
        ignored += sum(inter.get((g, p), 0) for g in crowd_by_category.get(ps["category_id"], ()))
        if 2 * ignored > pred_area[p]:  # more than half on void + same-category crowd: not counted
            continue
        stat[ps["category_id"]].fp += 1
    return stat


def _index_ids(ids: np.ndarray, info: Mapping[int, Mapping], kind: str):
    """Sorted ids (void first) and each pixel's index into them; ValueError for ids not listed in ``info``."""
    keys = np.array(sorted({VOID, *info}), dtype=np.int64)
    index = np.minimum(np.searchsorted(keys, ids), len(keys) - 1)
    unlisted = keys[index] != ids
    if unlisted.any():
        unknown = np.unique(ids[unlisted]).tolist()
        raise ValueError(f"{kind} segment ids {unknown} are in the map but not in segments_info")
    return keys, index


def pq_metrics(
    stat: PQStat,
    categories: Iterable[Mapping],
    names: Optional[Mapping[int, str]] = None,
    subsets: Optional[Mapping[str, Iterable[int]]] = None,
) -> "OrderedDict[str, float]":
    """PQ / SQ / RQ in percent for All, Things (``_th``) and Stuff (``_st``), then ``PQ-<name>`` etc. per class.

    Args:
        stat: merged statistics.
        categories: ``{"id", "isthing"}`` (and ``"name"``) of every category of the dataset.
        names: optional id -> name for the per-class keys (default: the category's ``name``, else its id).
        subsets: more groups, ``{key suffix: category ids}`` (``{"_seen": ..., "_unseen": ...}``), averaged as
            the three above and reported after them (``PQ_seen``, ``SQ_seen``, ``RQ_seen``, ...).

    A class with ``TP + FP + FN = 0`` is left out of the means and its per-class values are NaN (panopticapi
    reports 0 for it, which reads like a failure); a group with no such class is NaN (panopticapi divides by zero).
    A class with TP = 0 but FP or FN has PQ = SQ = RQ = 0 (panopticapi's convention for SQ).
    """
    cats = list(categories)
    per_class: Dict[int, Optional[tuple]] = {}
    for cat in cats:
        s = stat.categories.get(cat["id"], CategoryStat())
        denominator = s.tp + 0.5 * s.fp + 0.5 * s.fn
        if denominator == 0:
            per_class[cat["id"]] = None
            continue
        iou = s.iou_sum
        sq = iou / s.tp if s.tp else 0.0
        per_class[cat["id"]] = (iou / denominator, sq, s.tp / denominator)

    groups = [
        (suffix, [c["id"] for c in cats if isthing is None or bool(c["isthing"]) == isthing])
        for suffix, isthing in _GROUPS
    ]
    for suffix, ids in (subsets or {}).items():
        unknown = sorted(set(ids) - set(per_class))
        if unknown:
            raise ValueError(f"group '{suffix}' names category ids {unknown} that are not among the categories")
        groups.append((suffix, list(ids)))
    results: "OrderedDict[str, float]" = OrderedDict()
    for suffix, ids in groups:
        values = [per_class[c] for c in ids if per_class[c] is not None]
        for i, key in enumerate(("PQ", "SQ", "RQ")):
            results[key + suffix] = 100.0 * sum(v[i] for v in values) / len(values) if values else float("nan")
    for cat in cats:
        name = (names or {}).get(cat["id"], cat.get("name", str(cat["id"])))
        v = per_class[cat["id"]]
        for i, key in enumerate(("PQ", "SQ", "RQ")):
            results[f"{key}-{name}"] = 100.0 * v[i] if v is not None else float("nan")
    return results
