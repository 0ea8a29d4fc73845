"""Instance-segmentation AP through pycocotools' ``COCOeval`` (iouType ``segm``) on RLE masks.

Reported as detectron2's ``COCOEvaluator`` does, in percent: AP (IoU 0.50:0.95), AP50, AP75, APs / APm / APl
(areas below 32², up to 96², above) with at most 100 detections per image, and ``AP-<class>`` per class; a value
COCOeval leaves undefined (-1: no ground truth of that class or area range) is NaN. Each rank encodes its masks to
RLE as they arrive (a few hundred bytes per instance instead of an ``(H, W)`` mask); ``evaluate`` gathers them to
rank 0, which runs COCOeval over the processed images only, and every rank returns rank 0's result.

The ground truth is a COCO instances JSON (``json_file`` in the metadata, dataset category ids) or, without one,
the records' ``annotations`` (detectron2's dataset dicts: contiguous ``category_id``, polygon or RLE
``segmentation``, ``iscrowd``), converted to the same COCO structure in memory.

Seen / unseen (metadata ``evaluation_flag``, else ``trainable_flag``: :mod:`.seen_unseen`): ``AP_seen`` /
``AP_unseen`` are the means of ``AP-<class>`` over the seen / unseen thing classes, skipping classes without ground
truth in the evaluated images (COCOeval leaves their AP undefined, -1), so neither is NaN while one class of its
group has ground truth; ``hAP`` is their harmonic mean. FreeSeg (bytedance/FreeSeg,
mask2former/evaluation/instance_seg_evaluation.py, ``COCOEvaluator._derive_coco_results``) takes ``np.mean`` of the
same per-class values, NaN included (one class without ground truth makes its mean NaN); the two agree whenever every
thing class has ground truth, as on the whole COCO val2017.
"""

import contextlib
import io
import logging
import os
from collections import OrderedDict
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
import pycocotools.mask as mask_util
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from tabulate import tabulate

from ..data.catalog import DatasetCatalog, MetadataCatalog
from ..data.errors import DatasetError
from ..utils import comm
from .panoptic_evaluator import gather_to_main, panoptic_categories
from .results_json import write_results_json
from .seen_unseen import dataset_open_vocab_metadata, harmonic_mean, mean_of_defined, split_by_flag

logger = logging.getLogger(__name__)

RESULTS_FILE = "instance_results.json"
PREDICTIONS_FILE = "coco_instances_results.json"
SUMMARY_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")  # COCOeval.stats[0:6]


class InstanceSegEvaluator:
    """COCO mask AP over the processed images of every rank.

    Args:
        categories: the thing classes ``{"id": dataset id, "contiguous_id": model class index, "name": str}``.
        json_file: COCO instances JSON of the ground truth; else ``records`` must carry ``annotations``.
        records: dataset records (or a function returning them), used for the ground truth without ``json_file``
            and to find an input's ``image_id`` from its ``file_name``.
        output_dir: where rank 0 writes ``instance_results.json`` (and, with ``save_predictions``, detectron2's
            ``coco_instances_results.json``); None writes nothing.
        trainable_flag: 0/1 per contiguous class (1 = seen), indexed like ``contiguous_id``, the split the metrics
            report on; with both kinds, ``AP_seen``, ``AP_unseen`` and ``hAP`` join the results.
    """

    def __init__(
        self,
        categories: Sequence[Mapping],
        json_file: Optional[str] = None,
        records: Union[None, Sequence[dict], Callable[[], Sequence[dict]]] = None,
        output_dir: Optional[str] = None,
        save_predictions: bool = False,
        trainable_flag: Optional[Sequence[int]] = None,
    ) -> None:
        if json_file is None and records is None:
            raise ValueError("instance ground truth needs json_file (COCO instances JSON) or records with annotations")
        self.categories = [dict(c) for c in categories]
        self._to_dataset_id = {c["contiguous_id"]: c["id"] for c in self.categories}
        if len(self._to_dataset_id) != len(self.categories):
            raise ValueError("thing categories must have unique contiguous ids")
        self.json_file = json_file
        self._records = records
        self._coco: Optional[COCO] = None
        self._ids_by_file: Optional[Dict[str, object]] = None
        self.output_dir = output_dir
        self.save_predictions = save_predictions
        self.seen_unseen = split_by_flag(trainable_flag, self._to_dataset_id)
        self.reset()

    @classmethod
    def from_dataset(
        cls,
        dataset_name: str,
        output_dir: Optional[str] = None,
        device: Union[str, torch.device] = "cpu",
        save_predictions: bool = False,
    ) -> "InstanceSegEvaluator":
        """Thing classes from the metadata, ground truth from its ``json_file`` or the registered records."""
        del device  # the evaluator protocol passes it; masks are encoded on the host
        meta = MetadataCatalog.get(dataset_name)
        return cls(
            thing_categories(dataset_name),
            json_file=meta.get("json_file"),
            records=lambda: DatasetCatalog.get(dataset_name),
            output_dir=output_dir,
            save_predictions=save_predictions,
            trainable_flag=dataset_open_vocab_metadata(dataset_name)[0],
        )

    def reset(self) -> None:
        self._predictions: List[dict] = []
        self._image_ids: List[object] = []

    # ------------------------------------------------------------------------------------------------- process
    def process(self, inputs: List[dict], outputs: List[dict]) -> None:
        """Add images.

        Args:
            inputs: mapper dicts with ``image_id`` (or a ``file_name`` found in the records).
            outputs: ``{"instances": ...}`` with ``pred_masks`` bool ``(N, H0, W0)``, ``scores`` ``(N,)`` and
                ``pred_classes`` ``(N,)`` contiguous thing indices; an object with those attributes or a dict.
        """
        coco = self.coco_gt
        for inp, out in zip(inputs, outputs):
            image_id = self._image_id(inp)
            name = inp.get("file_name", f"image {image_id}")
            if image_id not in coco.imgs:
                raise DatasetError(
                    f"{self.json_file or 'the dataset records'}: no image with id {image_id} (for {name}); the "
                    "instances JSON and the evaluated dataset must come from the same split"
                )
            masks, scores, classes = (_field(out["instances"], k) for k in ("pred_masks", "scores", "pred_classes"))
            masks = masks.detach().cpu().numpy().astype(np.uint8)
            info = coco.imgs[image_id]
            if masks.ndim != 3 or masks.shape[1:] != (info["height"], info["width"]):
                raise ValueError(
                    f"prediction for {name}: masks of shape {masks.shape}, expected (N, {info['height']}, "
                    f"{info['width']}) (instances, original height, width)"
                )
            rles = mask_util.encode(np.asfortranarray(masks.transpose(1, 2, 0))) if len(masks) else []
            for rle, score, label in zip(rles, scores.tolist(), classes.tolist()):
                if label not in self._to_dataset_id:
                    raise ValueError(
                        f"prediction for {name}: class {label} is not a thing class of the dataset "
                        f"({sorted(self._to_dataset_id)}); keep only thing classes for instance output"
                    )
                rle["counts"] = rle["counts"].decode("ascii")
                self._predictions.append(
                    {
                        "image_id": image_id,
                        "category_id": self._to_dataset_id[label],
                        "segmentation": rle,
                        "score": float(score),
                    }
                )
            self._image_ids.append(image_id)

    @property
    def coco_gt(self) -> COCO:
        """The ground truth as a pycocotools COCO object (loaded on first use)."""
        if self._coco is None:
            with contextlib.redirect_stdout(io.StringIO()):
                if self.json_file is not None:
                    if not os.path.isfile(self.json_file):
                        raise DatasetError(f"{self.json_file}: instances JSON not found; check the metadata json_file")
                    self._coco = COCO(self.json_file)
                else:
                    self._coco = COCO()
                    self._coco.dataset = records_to_coco(self._load_records(), self.categories)
                    self._coco.createIndex()
        return self._coco

    def _load_records(self) -> Sequence[dict]:
        return self._records() if callable(self._records) else self._records

    def _image_id(self, inp: dict) -> object:
        if "image_id" in inp:
            return inp["image_id"]
        if self._ids_by_file is None:
            records = self._load_records() if self._records is not None else []
            self._ids_by_file = {r["file_name"]: r["image_id"] for r in records if "image_id" in r}
        if inp.get("file_name") not in self._ids_by_file:
            raise ValueError(f"input {inp.get('file_name', '?')} has no image_id and matches no dataset record")
        return self._ids_by_file[inp["file_name"]]

    # ------------------------------------------------------------------------------------------------ evaluate
    def evaluate(self) -> "OrderedDict[str, Dict[str, float]]":
        """``{"segm": {"AP", "AP50", "AP75", "APs", "APm", "APl", "AP-<class>", ...}}``; call on every rank."""
        gathered = gather_to_main((self._predictions, self._image_ids))
        metrics = None
        if comm.is_main_process():
            predictions = [p for preds, _ in gathered for p in preds]
            image_ids = sorted({i for _, ids in gathered for i in ids}, key=str)
            metrics = self._coco_metrics(predictions, image_ids)
            if self.output_dir:
                if self.save_predictions:
                    write_results_json(os.path.join(self.output_dir, PREDICTIONS_FILE), predictions)
                write_results_json(os.path.join(self.output_dir, RESULTS_FILE), metrics)
        metrics = comm.broadcast(metrics)
        return OrderedDict(segm=metrics)

    def _coco_metrics(self, predictions: List[dict], image_ids: List[object]) -> "OrderedDict[str, float]":
        nan = float("nan")
        metrics: "OrderedDict[str, float]" = OrderedDict((k, nan) for k in SUMMARY_KEYS)
        metrics.update((f"AP-{c['name']}", nan) for c in self.categories)
        if self.seen_unseen is not None:
            metrics.update((("AP_seen", nan), ("AP_unseen", nan), ("hAP", nan)))
        if not predictions:
            logger.warning("No instance predicted on %d images: every AP is NaN", len(image_ids))
            return metrics
        coco_gt = self.coco_gt
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            coco_dt = coco_gt.loadRes([dict(p) for p in predictions])  # loadRes adds keys to the dicts it gets
            coco_eval = COCOeval(coco_gt, coco_dt, "segm")
            coco_eval.params.imgIds = image_ids
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
        logger.info("COCOeval (segm) on %d images:\n%s", len(image_ids), stdout.getvalue().rstrip())
        for key, value in zip(SUMMARY_KEYS, coco_eval.stats[:6]):
            metrics[key] = 100.0 * float(value) if value >= 0 else nan
        # precision: (IoU thresholds, recall thresholds, categories, area ranges, max detections)
        precision = coco_eval.eval["precision"]
        column = {cat_id: k for k, cat_id in enumerate(coco_eval.params.catIds)}
        rows = []
        for c in self.categories:
            if c["id"] in column:
                p = precision[:, :, column[c["id"]], 0, -1]
                p = p[p > -1]
                metrics[f"AP-{c['name']}"] = 100.0 * float(p.mean()) if p.size else nan
            rows.append([c["name"], metrics[f"AP-{c['name']}"]])
        table = tabulate(rows, headers=["class", "AP"], tablefmt="pipe", floatfmt=".2f")
        logger.info("Per-class mask AP (%%):\n%s", table)
        if self.seen_unseen is not None:
            name = {c["contiguous_id"]: c["name"] for c in self.categories}
            for key, ids in zip(("AP_seen", "AP_unseen"), self.seen_unseen):
                metrics[key] = mean_of_defined(metrics[f"AP-{name[i]}"] for i in ids)
            metrics["hAP"] = harmonic_mean(metrics["AP_seen"], metrics["AP_unseen"])
            summary = (metrics[k] for k in ("AP_seen", "AP_unseen", "hAP"))
            logger.info("Mask AP seen %.2f, unseen %.2f, harmonic %.2f (%%)", *summary)
        return metrics


def thing_categories(dataset_name: str) -> List[dict]:
    """``[{"id", "contiguous_id", "name"}]`` of the thing classes, from ``thing_dataset_id_to_contiguous_id``.

    Names come from ``stuff_classes`` when the metadata uses Mask2Former's single contiguous space for panoptic
    data (every class in the stuff map), else from ``thing_classes`` (an instance-only dataset).
    """
    meta = MetadataCatalog.get(dataset_name)
    things = meta.get("thing_dataset_id_to_contiguous_id")
    if not things:
        raise ValueError(
            f"dataset '{dataset_name}' has no metadata 'thing_dataset_id_to_contiguous_id'; set it where it is "
            f"registered: MetadataCatalog.get('{dataset_name}').set(thing_classes=[...], "
            "thing_dataset_id_to_contiguous_id={dataset id: index})"
        )
    if meta.get("stuff_dataset_id_to_contiguous_id"):
        return [
            {k: c[k] for k in ("id", "contiguous_id", "name")}
            for c in panoptic_categories(dataset_name)
            if c["isthing"]
        ]
    names = meta.get("thing_classes") or []
    if sorted(things.values()) != list(range(len(names))):
        raise ValueError(
            f"dataset '{dataset_name}': thing_dataset_id_to_contiguous_id must map onto 0..{len(names) - 1}, one "
            "index per name of thing_classes"
        )
    return [
        {"id": int(d), "contiguous_id": int(c), "name": names[c]} for d, c in sorted(things.items(), key=lambda x: x[1])
    ]


def records_to_coco(records: Sequence[dict], categories: Sequence[Mapping]) -> dict:
    """A COCO instances dict (RLE segmentations, dataset ids) from detectron2-style records with ``annotations``."""
    if not any("annotations" in r for r in records):
        raise DatasetError(
            "the dataset records carry no 'annotations', so there is no instance ground truth; set json_file in the "
            "dataset's metadata to its COCO instances JSON (e.g. instances_val2017.json)"
        )
    to_dataset_id = {c["contiguous_id"]: c["id"] for c in categories}
    images, annotations = [], []
    for r in records:
        h, w = r["height"], r["width"]
        images.append({"id": r["image_id"], "height": h, "width": w, "file_name": r["file_name"]})
        for a in r.get("annotations", []):
            if a["category_id"] not in to_dataset_id:
                raise DatasetError(
                    f"{r['file_name']}: annotation of category_id {a['category_id']}, not a thing class in the "
                    "dataset's metadata; register the dataset with every category it uses"
                )
            rle = _to_rle(a["segmentation"], h, w, r["file_name"])
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": r["image_id"],
                    "category_id": to_dataset_id[a["category_id"]],
                    "segmentation": rle,
                    "area": float(mask_util.area(rle)),
                    "bbox": mask_util.toBbox(rle).tolist(),
                    "iscrowd": int(a.get("iscrowd", 0)),
                }
            )
    cats = [{"id": c["id"], "name": c["name"]} for c in categories]
    return {"images": images, "annotations": annotations, "categories": cats}


def _to_rle(segmentation, height: int, width: int, file_name: str) -> dict:
    if isinstance(segmentation, list):  # polygons [[x0, y0, x1, y1, ...], ...]
        rle = mask_util.merge(mask_util.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):  # uncompressed RLE
        rle = mask_util.frPyObjects(segmentation, height, width)
    elif isinstance(segmentation, dict) and "counts" in segmentation:
        rle = dict(segmentation)
    else:
        raise DatasetError(f"{file_name}: an annotation's segmentation is neither polygons nor RLE")
    if isinstance(rle["counts"], bytes):
        rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _field(instances, key: str) -> torch.Tensor:
    value = instances[key] if isinstance(instances, Mapping) else getattr(instances, key)
    return torch.as_tensor(value)
