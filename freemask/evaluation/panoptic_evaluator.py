"""COCO panoptic evaluation (PQ / SQ / RQ) with the evaluator protocol: ``reset / process / evaluate``.

Each rank turns its images into additive matching statistics (:mod:`.panoptic_quality`) as they arrive, so nothing
but a few integers per category is kept (plus each image's ``segments_info`` when the predictions are saved: their
PNGs go to disk as they arrive, :mod:`.panoptic_predictions`); ``evaluate`` sums the statistics of every rank (exact:
integers) and every rank returns the same metrics. The ground truth is the COCO panoptic format that Mask2Former's
dataset dicts carry: ``pan_seg_file_name`` (an RGB PNG, ``id = R + 256 G + 256² B``) and ``segments_info`` (``id``,
``category_id``, ``iscrowd``), read from the model input when the mapper passes them through, else from the dataset
record of the same ``image_id`` / ``file_name``.

Category ids: predictions carry contiguous ids (the model's class indices), the records too by default (Mask2Former
converts them when loading the JSON); both are mapped to dataset ids through the metadata's
``thing_dataset_id_to_contiguous_id`` / ``stuff_dataset_id_to_contiguous_id`` (Mask2Former's single contiguous space:
the stuff map lists every category, things included), and the saved predictions use dataset ids like COCO's files.

Seen / unseen (metadata ``evaluation_flag``, else ``trainable_flag``: :mod:`.seen_unseen`): ``PQ_seen`` etc. are
the means of the per-class values over the seen / unseen categories, like ``PQ`` over classes with TP + FP + FN > 0
(panopticapi's averaging), and ``hPQ`` the harmonic mean of ``PQ_seen`` and ``PQ_unseen``. FreeSeg
(bytedance/FreeSeg, mask2former/evaluation/panoptic_seg_evaluation.py, ``GeneralizedPanopticEvaluator.evaluate``)
instead averages panopticapi's ``per_class`` values, where a class with no segment at all is 0, over every seen /
unseen category; we deliberately do not, so that a class missing from the evaluated images does not lower the mean
(and ``PQ_seen`` / ``PQ_unseen`` split ``PQ``'s classes exactly). The two agree whenever every category has a
ground-truth or predicted segment, as on the whole COCO val2017 (all 133 categories occur in it).
"""

import logging
import math
import os
from collections import OrderedDict
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.distributed as dist
from tabulate import tabulate

from ..data.catalog import DatasetCatalog, MetadataCatalog
from ..data.errors import DatasetError
from ..data.panoptic_png import read_panoptic_png
from ..utils import comm
from .panoptic_predictions import PREDICTIONS_DIR, PanopticPredictionWriter
from .panoptic_quality import PQStat, pq_metrics, pq_stat_single_image
from .results_json import write_results_json
from .seen_unseen import dataset_open_vocab_metadata, harmonic_mean, split_by_flag

logger = logging.getLogger(__name__)

RESULTS_FILE = "panoptic_results.json"


class COCOPanopticEvaluator:
    """PQ, SQ, RQ (in percent) for All / Things / Stuff and per class over the processed images.

    Args:
        categories: every category of the dataset: ``{"id": dataset id, "contiguous_id": model class index,
            "name": str, "isthing": bool}``.
        records: the dataset records, or a function returning them (called on the first image whose input lacks
            ``pan_seg_file_name`` / ``segments_info``); None if the inputs always carry them.
        gt_contiguous_ids: the records' ``segments_info`` use contiguous ids (Mask2Former's dataset dicts);
            False for dataset ids (the panoptic JSON as written by COCO).
        output_dir: where rank 0 writes ``panoptic_results.json`` (the trainer passes ``OUTPUT_DIR/inference``);
            None writes nothing.
        save_predictions: also write the predictions in COCO panoptic format under ``output_dir/panoptic/``: each
            rank writes one RGB PNG per image as it is processed, rank 0 ``panoptic_predictions.json`` at the end
            (:class:`~.panoptic_predictions.PanopticPredictionWriter`); nothing without ``output_dir``.
        annotation_file: the panoptic JSON the records were read from, named in error messages.
        trainable_flag: 0/1 per contiguous class (1 = seen), the split the metrics report on; with both kinds,
            ``PQ_seen``, ``SQ_seen``, ``RQ_seen``, ``PQ_unseen``, ``SQ_unseen``, ``RQ_unseen`` and ``hPQ`` join the
            results.
    """

    def __init__(
        self,
        categories: Sequence[Mapping],
        records: Union[None, Sequence[dict], Callable[[], Sequence[dict]]] = None,
        gt_contiguous_ids: bool = True,
        output_dir: Optional[str] = None,
        save_predictions: bool = False,
        annotation_file: Optional[str] = None,
        trainable_flag: Optional[Sequence[int]] = None,
    ) -> None:
        self.categories = [dict(c) for c in categories]
        ids = [c["id"] for c in self.categories]
        contiguous = [c["contiguous_id"] for c in self.categories]
        names = [c["name"] for c in self.categories]
        for what, values in (("id", ids), ("contiguous_id", contiguous), ("name", names)):
            if len(set(values)) != len(values):
                raise ValueError(f"categories must have unique '{what}' values (they name the per-class metrics)")
        self._to_dataset_id = dict(zip(contiguous, ids))
        self._dataset_ids = set(ids)
        self._records = records
        self._index: Optional[Dict[Tuple[str, object], dict]] = None
        self.gt_contiguous_ids = gt_contiguous_ids
        self.output_dir = output_dir
        self.save_predictions = save_predictions
        self._writer: Optional[PanopticPredictionWriter] = None
        if save_predictions and output_dir:
            self._writer = PanopticPredictionWriter(os.path.join(output_dir, PREDICTIONS_DIR), self.categories)
        self.annotation_file = annotation_file
        split = split_by_flag(trainable_flag, contiguous)
        self._subsets = None
        if split is not None:  # as dataset ids, the space of the statistics
            self._subsets = {k: [self._to_dataset_id[c] for c in ids] for k, ids in zip(("_seen", "_unseen"), split)}
        self.reset()

    @classmethod
    def from_dataset(
        cls,
        dataset_name: str,
        output_dir: Optional[str] = None,
        device: Union[str, torch.device] = "cpu",
        save_predictions: bool = False,
    ) -> "COCOPanopticEvaluator":
        """Categories from the metadata (Mask2Former's keys), ground truth from the registered records.

        ``device`` is accepted for the evaluator protocol; matching runs on the host in numpy.
        """
        del device
        meta = MetadataCatalog.get(dataset_name)
        return cls(
            panoptic_categories(dataset_name),
            records=lambda: DatasetCatalog.get(dataset_name),
            gt_contiguous_ids=meta.get("panoptic_gt_contiguous_ids", True),
            output_dir=output_dir,
            save_predictions=save_predictions,
            annotation_file=meta.get("panoptic_json"),
            trainable_flag=dataset_open_vocab_metadata(dataset_name)[0],
        )

    def reset(self) -> None:
        """Forget every processed image."""
        self._stat = PQStat()
        self._num_images = 0
        if self._writer is not None:
            self._writer.reset()

    # ------------------------------------------------------------------------------------------------- process
    def process(self, inputs: List[dict], outputs: List[dict]) -> None:
        """Add images.

        Args:
            inputs: mapper dicts with ``file_name`` (and ``image_id``); ``pan_seg_file_name`` and ``segments_info``
                if the mapper passes them, else they come from the record.
            outputs: model outputs with ``panoptic_seg = (ids, segments_info)``: ids an int ``(H0, W0)`` tensor at
                the ground truth's resolution (0 = void), segments_info ``[{"id", "category_id" (contiguous),
                "isthing", "score" (optional)}]`` for every non-zero id.
        """
        for inp, out in zip(inputs, outputs):
            record = self._ground_truth_record(inp)
            name = record.get("file_name", inp.get("file_name", "an image"))
            pred_ids, pred_segments = out["panoptic_seg"]
            if pred_segments is None:
                raise ValueError(f"prediction for {name}: panoptic_seg has no segments_info (None)")
            pred_ids = pred_ids.detach().cpu().numpy() if torch.is_tensor(pred_ids) else np.asarray(pred_ids)
            pred_segments = [self._prediction_segment(s, name) for s in pred_segments]
            gt_ids, gt_segments = self._read_ground_truth(record)
            if pred_ids.shape != gt_ids.shape:
                raise ValueError(
                    f"prediction for {name} has shape {tuple(pred_ids.shape)} but its panoptic ground truth "
                    f"{record['pan_seg_file_name']} is {gt_ids.shape}; predict at the original resolution"
                )
            try:
                self._stat += pq_stat_single_image(gt_ids, gt_segments, pred_ids, pred_segments)
            except ValueError as e:
                raise ValueError(f"prediction for {name}: {e}") from None
            self._num_images += 1
            if self._writer is not None:
                file_name = record.get("file_name", inp.get("file_name", ""))
                stem = os.path.splitext(os.path.basename(file_name))[0]
                image_id = inp.get("image_id", record.get("image_id", stem))
                self._writer.write_image(image_id, file_name, pred_ids, pred_segments)

    def _ground_truth_record(self, inp: dict) -> dict:
        if "pan_seg_file_name" in inp and "segments_info" in inp:
            return inp
        if self._index is None:
            if self._records is None:
                raise ValueError(
                    f"input {inp.get('file_name', '?')} has no pan_seg_file_name / segments_info and the evaluator "
                    "has no dataset records; pass records= or let the test mapper keep those keys"
                )
            records = self._records() if callable(self._records) else self._records
            self._index = {}
            for r in records:
                for key in ("image_id", "file_name"):
                    if key in r:
                        self._index[(key, r[key])] = r
        for key in ("image_id", "file_name"):
            if key in inp and (key, inp[key]) in self._index:
                return self._index[(key, inp[key])]
        raise ValueError(
            f"input {inp.get('file_name', '?')} (image_id {inp.get('image_id', '?')}) matches no record of the "
            "evaluated dataset; evaluate on the dataset the test loader reads"
        )

    def _prediction_segment(self, segment: Mapping, name: str) -> dict:
        contiguous = int(segment["category_id"])
        if contiguous not in self._to_dataset_id:
            raise ValueError(
                f"prediction for {name}: segment {segment['id']} has category_id {contiguous}, not a class index of "
                f"the dataset (0..{len(self._to_dataset_id) - 1}); check MODEL.SEM_SEG_HEAD.NUM_CLASSES"
            )
        out = {"id": int(segment["id"]), "category_id": self._to_dataset_id[contiguous]}
        if "score" in segment:
            out["score"] = float(segment["score"])
        return out

    def _read_ground_truth(self, record: dict) -> Tuple[np.ndarray, List[dict]]:
        """GT id map and segments (dataset category ids); DatasetError naming the file for inconsistent data."""
        png = record["pan_seg_file_name"]
        source = self.annotation_file or "the dataset's panoptic JSON"
        ids = read_panoptic_png(png, record["segments_info"], source)
        segments = []
        for s in record["segments_info"]:
            category = int(s["category_id"])
            dataset_id = self._to_dataset_id.get(category) if self.gt_contiguous_ids else category
            if dataset_id is None or dataset_id not in self._dataset_ids:
                space = "contiguous ids" if self.gt_contiguous_ids else "dataset ids"
                raise DatasetError(
                    f"{png}: segment {s['id']} has category_id {category}, not among the dataset's {space} in its "
                    f"metadata ({source}); register the dataset with every category it uses"
                )
            segments.append({"id": int(s["id"]), "category_id": dataset_id, "iscrowd": int(s.get("iscrowd", 0))})
        return ids, segments

    # ------------------------------------------------------------------------------------------------ evaluate
    def evaluate(self) -> "OrderedDict[str, Dict[str, float]]":
        """``{"panoptic_seg": {"PQ", "SQ", "RQ", "PQ_th", ..., "PQ_st", ..., "PQ-<class>", ...}}`` over every rank.

        Must be called on all ranks; every rank gets the same result. Undefined values are NaN (``null`` in JSON).
        """
        total = PQStat()
        for stat in comm.all_gather(self._stat):
            total += stat
        num_images = sum(comm.all_gather(self._num_images))
        metrics = pq_metrics(total, self.categories, subsets=self._subsets)
        if self._subsets:
            metrics["hPQ"] = harmonic_mean(metrics["PQ_seen"], metrics["PQ_unseen"])
        if num_images == 0:
            logger.warning("No image was evaluated: every panoptic metric is NaN")
        self._log_tables(metrics, num_images)
        if self._writer is not None:
            annotations = gather_to_main(self._writer.annotations)
            if comm.is_main_process():
                self._writer.write_json([a for rank in annotations for a in rank])
        if self.output_dir and comm.is_main_process():
            write_results_json(os.path.join(self.output_dir, RESULTS_FILE), metrics)
        return OrderedDict(panoptic_seg=metrics)

    def _log_tables(self, metrics: Mapping[str, float], num_images: int) -> None:
        rows = []
        groups = [("All", "", None), ("Things", "_th", True), ("Stuff", "_st", False)]
        for label, suffix in (("Seen", "_seen"), ("Unseen", "_unseen")) if self._subsets else ():
            groups.append((label, suffix, set(self._subsets[suffix])))
        for label, suffix, member in groups:
            group = [c for c in self.categories if _in_group(c, member)]
            counted = sum(not math.isnan(metrics[f"PQ-{c['name']}"]) for c in group)
            rows.append([label] + [metrics[k + suffix] for k in ("PQ", "SQ", "RQ")] + [counted])
        summary = tabulate(rows, headers=["", "PQ", "SQ", "RQ", "#classes"], tablefmt="pipe", floatfmt=".3f")
        per_class = tabulate(
            [
                [c["name"], "thing" if c["isthing"] else "stuff"]
                + [metrics[f"{k}-{c['name']}"] for k in ("PQ", "SQ", "RQ")]
                for c in self.categories
            ],
            headers=["class", "kind", "PQ", "SQ", "RQ"],
            tablefmt="pipe",
            floatfmt=".2f",
        )
        logger.info("Panoptic evaluation on %d images (%%):\n%s\nPer class:\n%s", num_images, summary, per_class)


def _in_group(category: Mapping, member: Union[None, bool, set]) -> bool:
    """Whether ``category`` belongs to a row of the summary: every class (None), things / stuff (a bool), ids."""
    if member is None:
        return True
    if isinstance(member, bool):
        return bool(category["isthing"]) == member
    return category["id"] in member


def panoptic_categories(dataset_name: str) -> List[dict]:
    """``[{"id", "contiguous_id", "name", "isthing"}]`` from Mask2Former's metadata keys of ``dataset_name``.

    ``stuff_dataset_id_to_contiguous_id`` maps every category (things included) and ``stuff_classes`` names every
    contiguous id; ``thing_dataset_id_to_contiguous_id`` says which are things.
    """
    meta = MetadataCatalog.get(dataset_name)
    things = meta.get("thing_dataset_id_to_contiguous_id")
    stuff = meta.get("stuff_dataset_id_to_contiguous_id")
    names = meta.get("stuff_classes")
    if things is None or stuff is None or not names:
        raise ValueError(
            f"dataset '{dataset_name}' lacks panoptic metadata; set where it is registered: MetadataCatalog.get("
            f"'{dataset_name}').set(stuff_classes=[every class], stuff_dataset_id_to_contiguous_id={{dataset id: "
            "index, for every class}}, thing_dataset_id_to_contiguous_id={dataset id: index, things only})"
        )
    for dataset_id, contiguous in things.items():
        if stuff.get(dataset_id) != contiguous:
            raise ValueError(
                f"dataset '{dataset_name}': thing {dataset_id} -> {contiguous} is not in stuff_dataset_id_to_contiguous"
                "_id with the same index; the panoptic metadata uses one contiguous space with every class in the "
                "stuff map (Mask2Former's convention)"
            )
    if sorted(stuff.values()) != list(range(len(names))):
        raise ValueError(
            f"dataset '{dataset_name}': stuff_dataset_id_to_contiguous_id must map onto 0..{len(names) - 1} "
            f"(one index per name of stuff_classes), got {len(stuff)} entries"
        )
    return [
        {"id": int(d), "contiguous_id": int(c), "name": names[c], "isthing": d in things}
        for d, c in sorted(stuff.items(), key=lambda item: item[1])
    ]


def gather_to_main(obj: object) -> List[object]:
    """Every rank's ``obj`` on rank 0 (rank order), ``[]`` elsewhere; ``[obj]`` in a single process."""
    if comm.get_world_size() == 1:
        return [obj]
    gathered = [None] * comm.get_world_size() if comm.is_main_process() else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered if comm.is_main_process() else []
