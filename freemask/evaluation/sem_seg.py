"""Semantic-segmentation metrics from one confusion matrix: mIoU, fwIoU, mACC, pACC and per-class IoU / accuracy.

Every metric is a function of the ``(C, C)`` confusion matrix, so the evaluator only accumulates that matrix (on the
model's device, with ``torch.bincount``: no per-image copy of predictions to the host) and sums it across ranks once
at the end — the result is independent of how the test set was sharded. Predictions are compared with the ground
truth at the ORIGINAL resolution (the mapper keeps it, the inference helper resizes scores back to it), which is the
protocol of the published ADE20K / Cityscapes / COCO-Stuff numbers.

Classes absent from the ground truth get NaN and are left out of the means, as in detectron2: a class's accuracy is
defined iff it has ground-truth pixels, its IoU iff it has ground-truth pixels and a non-empty union. (MMSegmentation
instead skips classes with an empty union only; the two agree unless a class is predicted but never present.)

On an open-vocabulary test set (metadata ``trainable_flag`` or ``evaluation_flag``, ``evaluation_set``) the seen /
unseen means of :mod:`.seen_unseen` join the results, from the same matrix.
"""

import logging
import math
import os
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Sequence, Union

import torch
from tabulate import tabulate

from ..data.catalog import MetadataCatalog
from ..utils import comm
from .results_json import write_results_json
from .seen_unseen import check_evaluation_set, dataset_open_vocab_metadata, semantic_seen_unseen, split_by_flag

logger = logging.getLogger(__name__)

RESULTS_FILE = "sem_seg_results.json"
# Where a training run's evaluations go: OUTPUT_DIR/inference/[<dataset>/ when several]/[ms_flip/ for the multi-scale
# + flip pass]; written by the trainer, read by the compare tool and the toy pipeline.
INFERENCE_DIR = "inference"
MULTI_SCALE_DIR = "ms_flip"
# The results file's record of what was evaluated, when the evaluator knows its dataset (``from_dataset``, which is
# how the trainer builds it): ``{"name": <dataset>, "classes": [<class names, in label order>]}``. It lets a reader
# of two files (tools/compare_runs.py) refuse results of different datasets; the metrics themselves are unchanged.
DATASET_KEY = "dataset"


class SemSegEvaluator:
    """Accumulates a confusion matrix over images and turns it into metrics (in percent).

    Args:
        num_classes: C, the number of channels of the scores and of valid ground-truth labels ``0..C-1``.
        ignore_label: ground-truth value of pixels that count for nothing (255 in every supported dataset).
        class_names: C names, used for the per-class keys ``IoU-<name>`` / ``ACC-<name>`` and the table.
        output_dir: where rank 0 writes ``sem_seg_results.json`` (the trainer passes ``OUTPUT_DIR/inference``);
            None writes nothing.
        device: where argmax and the confusion matrix live (the model's device).
        trainable_flag: 0/1 per class (1 = seen in training); with both kinds, ``mIoU_seen``, ``mIoU_unseen``,
            ``hIoU``, ``pAcc_seen``, ``pAcc_unseen`` join the results.
        evaluation_set: ``{name X: [class ids]}``; with such a ``trainable_flag``, FreeSeg's ``mIoU-X``,
            ``mIoU-unX``, ``hIoU-X``, ``pAcc-X``, ``pAcc-unX`` also join the results for each entry.
        dataset_name: the evaluated dataset; when given, the results file also records it and the class names
            (under DATASET_KEY), not the returned metrics.
    """

    def __init__(
        self,
        num_classes: int,
        ignore_label: int,
        class_names: Sequence[str],
        output_dir: Optional[str] = None,
        device: Union[str, torch.device] = "cpu",
        trainable_flag: Optional[Sequence[int]] = None,
        evaluation_set: Optional[Mapping[str, Sequence[int]]] = None,
        dataset_name: Optional[str] = None,
    ) -> None:
        if len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names given for {num_classes} classes")
        if len(set(class_names)) != num_classes:
            raise ValueError("class names must be unique: they name the per-class metrics")
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.class_names = list(class_names)
        self.output_dir = output_dir
        self.device = torch.device(device)
        if trainable_flag is not None and len(trainable_flag) != num_classes:
            raise ValueError(f"trainable_flag has {len(trainable_flag)} entries for {num_classes} classes")
        self.seen_unseen = split_by_flag(trainable_flag, range(num_classes))
        self.evaluation_set = check_evaluation_set(evaluation_set, num_classes)
        self.dataset_name = dataset_name
        self.reset()

    @classmethod
    def from_dataset(
        cls, dataset_name: str, output_dir: Optional[str] = None, device: Union[str, torch.device] = "cpu"
    ) -> "SemSegEvaluator":
        """Classes and ignore label from the dataset's metadata (``stuff_classes``, ``ignore_label``)."""
        meta = MetadataCatalog.get(dataset_name)
        classes = meta.get("stuff_classes")
        if not classes:
            raise ValueError(
                f"dataset '{dataset_name}' has no metadata 'stuff_classes'; set it where the dataset is registered: "
                f"MetadataCatalog.get('{dataset_name}').set(stuff_classes=[...], ignore_label=255)"
            )
        ignore_label = meta.get("ignore_label")
        if ignore_label is None:
            raise ValueError(
                f"dataset '{dataset_name}' has no metadata 'ignore_label'; set it where the dataset is registered: "
                f"MetadataCatalog.get('{dataset_name}').set(ignore_label=255)"
            )
        trainable_flag, evaluation_set = dataset_open_vocab_metadata(dataset_name)
        return cls(
            len(classes),
            ignore_label,
            classes,
            output_dir=output_dir,
            device=device,
            trainable_flag=trainable_flag,
            evaluation_set=evaluation_set,
            dataset_name=dataset_name,
        )

    def reset(self) -> None:
        """Forget every processed image (call before a new evaluation)."""
        self.conf_matrix = torch.zeros((self.num_classes, self.num_classes), dtype=torch.int64, device=self.device)

    def process(self, inputs: List[dict], outputs: List[dict]) -> None:
        """Add images to the confusion matrix.

        Args:
            inputs: mapper dicts with ``sem_seg`` int64 ``(H0, W0)`` ground truth (and ``file_name`` for errors).
            outputs: model outputs with ``sem_seg`` float ``(C, H0, W0)`` scores.
        """
        c = self.num_classes
        for inp, out in zip(inputs, outputs):
            scores = out["sem_seg"]
            gt = inp["sem_seg"].to(self.device, non_blocking=True).long()
            name = inp.get("file_name", "an image")
            if scores.dim() != 3 or scores.shape[0] != c or scores.shape[1:] != gt.shape:
                raise ValueError(
                    f"scores of {name} have shape {tuple(scores.shape)}, expected ({c}, {gt.shape[0]}, {gt.shape[1]}) "
                    "(number of classes, ground-truth height, width); check MODEL.SEM_SEG_HEAD.NUM_CLASSES"
                )
            pred = scores.to(self.device, non_blocking=True).argmax(dim=0)
            valid = gt != self.ignore_label
            gt, pred = gt[valid], pred[valid]
            low, high = (int(v) for v in torch.aminmax(gt)) if gt.numel() else (0, 0)
            if low < 0 or high >= c:
                bad = high if high >= c else low
                raise ValueError(
                    f"ground truth of {name} has label {bad}, outside 0..{c - 1} and not the ignore label "
                    f"{self.ignore_label}; check MODEL.SEM_SEG_HEAD.NUM_CLASSES and the dataset's reduce_zero_label"
                )
            # Row = ground-truth class, column = predicted class.
            self.conf_matrix += torch.bincount(gt * c + pred, minlength=c * c).view(c, c)

    def evaluate(self) -> "OrderedDict[str, Dict[str, float]]":
        """Metrics over every image processed on every rank: ``{"sem_seg": {"mIoU": ..., "IoU-<class>": ...}}``.

        Must be called on all ranks (it all-reduces); every rank gets the same result. Values are Python floats in
        percent; undefined ones are ``nan`` here and ``null`` in the JSON file (strict JSON has no NaN, and
        ``null == null`` keeps two result files comparable).
        """
        conf = comm.all_reduce_sum(self.conf_matrix.clone()).cpu().double()
        metrics = compute_metrics(conf, self.class_names)
        metrics.update(semantic_seen_unseen(conf, self.seen_unseen, self.evaluation_set))
        if conf.sum() == 0:
            logger.warning("No ground-truth pixel was evaluated: every metric is NaN")
        self._log_table(metrics)
        if self.output_dir and comm.is_main_process():
            write_results_json(os.path.join(self.output_dir, RESULTS_FILE), self._results_file(metrics))
        return OrderedDict(sem_seg=metrics)

    def _results_file(self, metrics: Dict[str, float]) -> Dict[str, object]:
        """What the results file holds: the metrics, then (with a dataset name) the dataset and its class names."""
        if self.dataset_name is None:
            return metrics
        return {**metrics, DATASET_KEY: {"name": self.dataset_name, "classes": list(self.class_names)}}

    def _log_table(self, metrics: Dict[str, float]) -> None:
        rows = [[name, metrics[f"IoU-{name}"], metrics[f"ACC-{name}"]] for name in self.class_names]
        rows.append(["mean", metrics["mIoU"], metrics["mACC"]])
        table = tabulate(rows, headers=["class", "IoU", "ACC"], tablefmt="pipe", floatfmt=".2f")
        logger.info(
            "Per-class results (%%):\n%s\nmIoU %.2f  fwIoU %.2f  mACC %.2f  pACC %.2f",
            table,
            metrics["mIoU"],
            metrics["fwIoU"],
            metrics["mACC"],
            metrics["pACC"],
        )
        open_vocab = [k for k in metrics if k.startswith(("mIoU_", "mIoU-", "hIoU", "pAcc"))]
        if open_vocab:
            logger.info("Seen / unseen (%%): %s", "  ".join(f"{k} {metrics[k]:.2f}" for k in open_vocab))


def compute_metrics(conf: torch.Tensor, class_names: Sequence[str]) -> "OrderedDict[str, float]":
    """Metrics in percent from a ``(C, C)`` confusion matrix (row = ground truth, column = prediction).

    ``mIoU`` / ``mACC``: means over classes with a defined value; ``fwIoU``: IoU weighted by each class's share of
    ground-truth pixels; ``pACC``: correctly classified pixels / all evaluated pixels.
    """
    conf = conf.double()
    tp = conf.diagonal()
    pos_gt = conf.sum(dim=1)
    pos_pred = conf.sum(dim=0)
    union = pos_gt + pos_pred - tp
    acc_valid = pos_gt > 0
    iou_valid = acc_valid & (union > 0)
    nan = torch.full_like(tp, math.nan)
    acc = torch.where(acc_valid, tp / pos_gt.clamp(min=1), nan)
    iou = torch.where(iou_valid, tp / union.clamp(min=1), nan)
    total = pos_gt.sum()
    freq = pos_gt / total if total > 0 else torch.zeros_like(pos_gt)

    def mean(values: torch.Tensor, valid: torch.Tensor) -> float:
        return 100.0 * float(values[valid].mean()) if bool(valid.any()) else math.nan

    results: "OrderedDict[str, float]" = OrderedDict()
    results["mIoU"] = mean(iou, iou_valid)
    results["fwIoU"] = 100.0 * float((iou[iou_valid] * freq[iou_valid]).sum()) if total > 0 else math.nan
    for i, name in enumerate(class_names):
        results[f"IoU-{name}"] = 100.0 * float(iou[i])
    results["mACC"] = mean(acc, acc_valid)
    results["pACC"] = 100.0 * float(tp.sum() / total) if total > 0 else math.nan
    for i, name in enumerate(class_names):
        results[f"ACC-{name}"] = 100.0 * float(acc[i])
    return results
