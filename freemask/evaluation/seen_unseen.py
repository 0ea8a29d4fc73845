"""Seen / unseen summaries of open-vocabulary test sets: FreeSeg's zero-shot protocol (bytedance/FreeSeg,
mask2former/evaluation/generalized_sem_seg_evaluation.py, panoptic_seg_evaluation.py, instance_seg_evaluation.py).

An open-vocabulary test set flags each contiguous class in its metadata ``trainable_flag`` (1 = seen: in the
training vocabulary, 0 = unseen), which the model's CLIP ensemble reads. The semantic, panoptic and instance
evaluators take the flag the metrics report on — ``evaluation_flag`` where the registration gives one, else
``trainable_flag`` — and add the means over the seen and the unseen classes and their harmonic mean next to the usual
metrics, under our names (``mIoU_seen`` / ``mIoU_unseen`` / ``hIoU``, ``PQ_seen`` / ``PQ_unseen`` / ``hPQ``,
``AP_seen`` / ``AP_unseen`` / ``hAP``); their averaging is the one of the metric they summarise (``mIoU_seen`` is the
mean of the same ``IoU-<class>`` values as ``mIoU``). Two flags because FreeSeg's COCO panoptic test set has two: its
registration's ``trainable_flag`` (8 unseen classes, what its model uses) and the 11 unseen classes its panoptic
evaluator hard-codes (the 7 things of which its instance evaluator hard-codes by name).

A semantic test set may also name class subsets in ``evaluation_set`` (``{"base": [ids]}``); for each entry X the
semantic evaluator reports FreeSeg's own keys ``mIoU-X`` / ``mIoU-unX`` / ``hIoU-X`` / ``pAcc-X`` / ``pAcc-unX``
with FreeSeg's averaging, so they compare with FreeSeg's published numbers.

Nothing is added when the flag is absent or names only one kind (a closed-vocabulary or a training split), even
with an ``evaluation_set``: those results keep exactly their former keys.
"""

import logging
import math
from collections import OrderedDict
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch

from ..data.catalog import MetadataCatalog
from ..data.errors import DatasetError

logger = logging.getLogger(__name__)


def split_by_flag(
    trainable_flag: Optional[Sequence[int]], class_ids: Iterable[int]
) -> Optional[Tuple[List[int], List[int]]]:
    """The (seen, unseen) ones among ``class_ids`` (contiguous ids), or None without both kinds in the flag.

    Args:
        trainable_flag: 0/1 per contiguous class of the test set (1 = seen), or None.
        class_ids: the contiguous ids the caller reports on (every class, or the thing classes for mask AP).
    """
    if trainable_flag is None:
        return None
    flag = _check_flag(trainable_flag)
    ids = sorted(int(i) for i in class_ids)
    if ids and ids[-1] >= len(flag):
        raise ValueError(f"trainable_flag has {len(flag)} entries but class {ids[-1]} is evaluated")
    if len(set(flag)) < 2:
        return None
    return [i for i in ids if flag[i]], [i for i in ids if not flag[i]]


def dataset_open_vocab_metadata(
    dataset_name: str,
) -> Tuple[Optional[List[int]], Optional[Dict[str, List[int]]]]:
    """The flag the test set's seen / unseen metrics use (``evaluation_flag``, else ``trainable_flag``) and its
    ``evaluation_set`` (None where absent), checked against its classes.

    Both index the contiguous classes named by ``stuff_classes`` (``thing_classes`` for an instance-only split);
    a wrong entry is a DatasetError naming the dataset, raised before any image is evaluated.
    """
    meta = MetadataCatalog.get(dataset_name)
    key = "evaluation_flag" if meta.get("evaluation_flag") is not None else "trainable_flag"
    flag, evaluation_set = meta.get(key), meta.get("evaluation_set")
    num_classes = len(meta.get("stuff_classes") or meta.get("thing_classes") or [])
    where = f"dataset '{dataset_name}' (its registration's metadata)"
    try:
        if flag is not None:
            flag = _check_flag(flag)
            if len(flag) != num_classes:
                raise ValueError(f"{key} has {len(flag)} entries for {num_classes} classes")
        evaluation_set = check_evaluation_set(evaluation_set, num_classes)
    except ValueError as e:
        raise DatasetError(
            f"{where}: {e}; register {key} as one 0/1 per contiguous class (1 = seen in training) and "
            "evaluation_set as {name: [contiguous class ids]}"
        ) from None
    if flag is not None and len(set(flag)) == 2:
        names = meta.get("stuff_classes") or meta.get("thing_classes")
        unseen = [names[i] for i, f in enumerate(flag) if not f]
        logger.info("%s: seen / unseen metrics over its %s, %d unseen: %s", dataset_name, key, len(unseen), unseen)
    return flag, evaluation_set


def check_evaluation_set(
    evaluation_set: Optional[Mapping[str, Sequence[int]]], num_classes: int
) -> Optional[Dict[str, List[int]]]:
    """``evaluation_set`` as ``{name: [ids]}`` after checking every id is a class index (ValueError otherwise)."""
    if evaluation_set is None:
        return None
    if not isinstance(evaluation_set, Mapping):
        raise ValueError("evaluation_set must map a name to a list of class ids, e.g. {'base': [0, 1]}")
    checked = {}
    for name, ids in evaluation_set.items():
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < num_classes]
        if bad:
            raise ValueError(f"evaluation_set '{name}' lists class ids {bad}, outside 0..{num_classes - 1}")
        checked[str(name)] = ids
    return checked


def _check_flag(trainable_flag: Sequence[int]) -> List[int]:
    flag = [int(v) for v in trainable_flag]
    if any(v not in (0, 1) for v in flag):
        raise ValueError(f"trainable_flag must hold 0 (unseen) or 1 (seen) per class, got {sorted(set(flag))}")
    return flag


def harmonic_mean(a: float, b: float) -> float:
    """2ab / (a + b): NaN if either is NaN, 0 if either is 0 (FreeSeg's ``2 / (1/a + 1/b)`` with 1/0 = inf)."""
    if math.isnan(a) or math.isnan(b):
        return math.nan
    return 0.0 if a == 0 or b == 0 else 2.0 * a * b / (a + b)


def mean_of_defined(values: Iterable[float]) -> float:
    """Mean of the non-NaN values (NaN marks a class the metric leaves out); NaN when none is defined."""
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan


def semantic_seen_unseen(
    conf: torch.Tensor,
    seen_unseen: Optional[Tuple[Sequence[int], Sequence[int]]],
    evaluation_set: Optional[Mapping[str, Sequence[int]]] = None,
) -> "OrderedDict[str, float]":
    """Seen / unseen semantic metrics in percent from the ``(C, C)`` confusion matrix (row = GT, column = prediction).

    ``mIoU_seen`` / ``mIoU_unseen``: mean IoU over the seen / unseen classes with ground-truth pixels (the classes
    ``mIoU`` averages); ``hIoU``: their harmonic mean; ``pAcc_seen`` / ``pAcc_unseen``: the share of the group's
    ground-truth pixels predicted as their own class.

    ``mIoU-X`` / ``mIoU-unX`` for each ``evaluation_set`` entry X follow FreeSeg (``GeneralizedSemSegEvaluator.
    evaluate``): the sum of IoU over the subset's classes with ground truth, divided by the number of its classes
    with ground truth OR predictions, so a class predicted but absent from the evaluated images counts as an IoU of 0
    there (not in ``mIoU_seen``, which leaves it out, as ``mIoU`` does). ``hIoU-X`` is their harmonic mean and
    ``pAcc-X`` / ``pAcc-unX`` the pixel accuracies over the subset and its complement.

    Nothing without ``seen_unseen`` (no flag naming both kinds), ``evaluation_set`` or not: the interface contract
    ties every open-vocabulary key to ``trainable_flag`` (FreeSeg reports ``evaluation_set`` keys on their own).
    """
    conf = conf.double()
    tp = conf.diagonal()
    pos_gt = conf.sum(dim=1)
    pos_pred = conf.sum(dim=0)
    has_gt = pos_gt > 0
    iou = torch.where(has_gt, tp / (pos_gt + pos_pred - tp).clamp(min=1), torch.zeros_like(tp))
    results: "OrderedDict[str, float]" = OrderedDict()
    if seen_unseen is None:
        return results
    for suffix, ids in zip(("_seen", "_unseen"), seen_unseen):
        counted = _member_mask(ids, len(tp)) & has_gt
        results["mIoU" + suffix] = 100.0 * float(iou[counted].mean()) if bool(counted.any()) else math.nan
    results["hIoU"] = harmonic_mean(results["mIoU_seen"], results["mIoU_unseen"])
    for suffix, ids in zip(("_seen", "_unseen"), seen_unseen):
        results["pAcc" + suffix] = _pixel_accuracy(tp, pos_gt, _member_mask(ids, len(tp)))
    for name, ids in (evaluation_set or {}).items():
        member = _member_mask(ids, len(tp))
        for prefix, subset in ((name, member), (f"un{name}", ~member)):
            listed = subset & ((pos_gt + pos_pred) > 0)
            results[f"mIoU-{prefix}"] = (
                100.0 * float(iou[subset & has_gt].sum()) / int(listed.sum()) if bool(listed.any()) else math.nan
            )
            results[f"pAcc-{prefix}"] = _pixel_accuracy(tp, pos_gt, subset)
        results[f"hIoU-{name}"] = harmonic_mean(results[f"mIoU-{name}"], results[f"mIoU-un{name}"])
    return results


def _member_mask(ids: Sequence[int], num_classes: int) -> torch.Tensor:
    mask = torch.zeros(num_classes, dtype=torch.bool)
    mask[list(ids)] = True
    return mask


def _pixel_accuracy(tp: torch.Tensor, pos_gt: torch.Tensor, member: torch.Tensor) -> float:
    total = float(pos_gt[member].sum())
    return 100.0 * float(tp[member].sum()) / total if total > 0 else math.nan
