"""Top-1 / top-5 accuracy of region classification: how stage 1 (prompt learning) of FreeSeg is evaluated.

Each test sample is one ground-truth region; the model returns its class scores (``{"classification": (K,)}``) and
the label is the sample's ``instances["gt_classes"][0]``. Per class, the evaluator counts samples, top-1 hits and
top-5 hits (top-K when there are fewer than 5 classes), on the model's device, and sums the counts across ranks at
the end. Results, in percent: ``ACC1`` / ``ACC5`` over all samples, ``mACC1`` the mean of the per-class top-1 over
classes with samples, ``ACC1-<class>`` / ``ACC5-<class>`` (NaN for a class without samples), and, when the test set
flags its classes seen or unseen (``trainable_flag``), ``ACC1_seen`` / ``ACC1_unseen`` / ``ACC5_seen`` /
``ACC5_unseen`` over the samples of each group (FreeSeg reports accuracy per evaluation set: bytedance/FreeSeg,
mask2former/evaluation/classification_evaluation.py, ``ClassificationEvaluator.evaluate``).
"""

import logging
import math
import os
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Union

import torch

from ..data.catalog import MetadataCatalog
from ..utils import comm
from .results_json import write_results_json

logger = logging.getLogger(__name__)

RESULTS_FILE = "classification_results.json"
TOP_K = 5


class ClassificationEvaluator:
    """Args:
    class_names: the K names of the score columns (contiguous ids of the test split).
    seen: K flags (True = seen in training) for the seen / unseen accuracies; None leaves them out.
    output_dir: where rank 0 writes ``classification_results.json``; None writes nothing.
    device: where the counts live (the model's device).
    """

    def __init__(
        self,
        class_names: Sequence[str],
        seen: Optional[Sequence[bool]] = None,
        output_dir: Optional[str] = None,
        device: Union[str, torch.device] = "cpu",
    ) -> None:
        if seen is not None and len(seen) != len(class_names):
            raise ValueError(f"{len(seen)} seen flags for {len(class_names)} classes")
        self.class_names = list(class_names)
        self.seen = None if seen is None else torch.tensor([bool(s) for s in seen])
        self.output_dir = output_dir
        self.device = torch.device(device)
        self.reset()

    @classmethod
    def from_dataset(
        cls, dataset_name: str, output_dir: Optional[str] = None, device: Union[str, torch.device] = "cpu"
    ) -> "ClassificationEvaluator":
        """Classes from the split's ``stuff_classes``; seen / unseen from ``trainable_flag`` when it has both."""
        meta = MetadataCatalog.get(dataset_name)
        names = meta.get("stuff_classes")
        if not names:
            raise ValueError(
                f"dataset '{dataset_name}' has no metadata 'stuff_classes'; set it where the dataset is registered"
            )
        flags = meta.get("trainable_flag")
        seen = [bool(f) for f in flags] if flags is not None and 0 < sum(map(bool, flags)) < len(flags) else None
        return cls(names, seen, output_dir=output_dir, device=device)

    def reset(self) -> None:
        k = len(self.class_names)
        # Rows: samples, top-1 hits, top-5 hits; one column per class.
        self.counts = torch.zeros((3, k), dtype=torch.int64, device=self.device)

    def process(self, inputs: List[dict], outputs: List[dict]) -> None:
        k = len(self.class_names)
        for inp, out in zip(inputs, outputs):
            scores = out["classification"].to(self.device).flatten()
            instances = inp["instances"]
            classes = instances["gt_classes"] if isinstance(instances, dict) else instances.gt_classes
            label = int(classes[0])
            if scores.numel() != k or not 0 <= label < k:
                raise ValueError(
                    f"{inp.get('file_name', 'a sample')}: {scores.numel()} scores and label {label} for the {k} "
                    "classes of the test set; the model must score the test set's vocabulary"
                )
            top = scores.topk(min(TOP_K, k)).indices
            self.counts[0, label] += 1
            self.counts[1, label] += int(top[0] == label)
            self.counts[2, label] += int(bool((top == label).any()))

    def evaluate(self) -> "OrderedDict[str, Dict[str, float]]":
        """``{"classification": {...}}`` over every rank's samples (call on all ranks; all get the same result)."""
        counts = comm.all_reduce_sum(self.counts.clone()).cpu().double()
        metrics = compute_accuracies(counts, self.class_names, self.seen)
        logger.info(
            "Classification: ACC1 %.2f  ACC5 %.2f  mACC1 %.2f over %d samples",
            metrics["ACC1"],
            metrics["ACC5"],
            metrics["mACC1"],
            int(counts[0].sum()),
        )
        if self.output_dir and comm.is_main_process():
            write_results_json(os.path.join(self.output_dir, RESULTS_FILE), dict(metrics))
        return OrderedDict(classification=metrics)


def compute_accuracies(
    counts: torch.Tensor, class_names: Sequence[str], seen: Optional[torch.Tensor] = None
) -> "OrderedDict[str, float]":
    """Accuracies in percent from ``counts`` (3, K): samples, top-1 hits, top-5 hits per class."""
    total, top1, top5 = counts.double()

    def ratio(hits: torch.Tensor, n: torch.Tensor) -> float:
        return 100.0 * float(hits.sum() / n.sum()) if n.sum() > 0 else math.nan

    results: "OrderedDict[str, float]" = OrderedDict()
    results["ACC1"] = ratio(top1, total)
    results["ACC5"] = ratio(top5, total)
    present = total > 0
    results["mACC1"] = 100.0 * float((top1[present] / total[present]).mean()) if bool(present.any()) else math.nan
    if seen is not None:
        for group, flags in (("seen", seen), ("unseen", ~seen)):
            results[f"ACC1_{group}"] = ratio(top1[flags], total[flags])
            results[f"ACC5_{group}"] = ratio(top5[flags], total[flags])
    for i, name in enumerate(class_names):
        results[f"ACC1-{name}"] = ratio(top1[i : i + 1], total[i : i + 1])
        results[f"ACC5-{name}"] = ratio(top5[i : i + 1], total[i : i + 1])
    return results
