"""Validate a registered dataset file by file before a long run finds its one bad file at iteration 80k.

Each record is checked exactly as training reads it (``read_image`` / ``read_mask`` / ``reduce_zero_label`` of
``mappers/semantic.py``, and ``object_records.py`` for objects): the image decodes completely (a truncated JPEG is a
problem, although OpenCV would decode it grey), the mask exists and is a single-channel label map of the image's size,
and every label is a class (0..C-1) or the ignore label; a synthetic split's pairs must come from a mask of its real
dataset (``tools/resample_syn.py`` rejects the others), a classification record's class must be in its mask. Every split
kind is checked by what its records hold: a panoptic record's PNG and ``segments_info`` (ids both ways, size,
categories), an instance record's annotations (empty or malformed polygons and RLEs, sizes, categories), a semantic map
wherever there is one. Classes are the metadata's ``stuff_classes``, or ``thing_classes`` for an instance split. Workers
return only a few counters per record (never pixels), and results are folded in as they stream back, so memory stays
flat over hundreds of thousands of files. Tools/check_dataset.py is the command line.
"""

import functools
import os
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import pycocotools.mask as mask_util
from tabulate import tabulate
from tqdm import tqdm

from ..commands import hint as command_hint
from ..utils.worker_pool import process_pool
from .catalog import DatasetCatalog, MetadataCatalog
from .errors import DatasetError, RecordError
from .mappers.semantic import read_image, read_mask, reduce_zero_label
from .object_records import annotation_rle, check_object_classes, panoptic_segment_ids
from .panoptic_png import read_panoptic_png

# Every kind of problem, in the order the summary lists them.
PROBLEM_KINDS = (
    "load_error",  # the dataset's loader itself failed (missing folder, images without masks, ...)
    "missing_image",
    "bad_image",  # truncated, corrupt or not an image
    "missing_mask",
    "bad_mask",  # corrupt or not an image
    "mask_not_single_channel",  # RGB / palette PNG instead of class indices
    "size_mismatch",
    "label_out_of_range",
    "class_not_in_mask",  # a classification record whose class its mask does not hold
    "missing_panoptic_png",
    "bad_panoptic_png",  # corrupt, or not an 8-bit RGB PNG
    "segment_ids_mismatch",  # a PNG id not in segments_info, a listed segment with no pixel, an id listed twice
    "empty_annotation",  # segmentation [] / polygons of area 0 / an RLE of zeros
    "bad_annotation",  # malformed polygons, an invalid RLE
    "category_out_of_range",  # a segment / annotation class outside the metadata's classes
    "no_real_mask",  # a synthetic <stem>_seed_<s> pair whose real mask is not in its real dataset
)
# How many distinct bad label values an out-of-range message lists.
_SHOWN_LABELS = 8

# (kind, path, message) of one problem.
Problem = Tuple[str, str, str]


@dataclass
class RecordResult:
    """What one record contributes: its problems and its label counts ((K,) class ids with (K,) pixel counts)."""

    problems: List[Problem]
    classes: np.ndarray
    pixels: np.ndarray
    ignore_pixels: int = 0


def _mask_problem(path: str, error: DatasetError) -> Problem:
    """Tell a colour mask from a corrupt one (only on the failure path, so the second decode costs nothing)."""
    try:
        decoded = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except (OSError, cv2.error):
        decoded = None
    kind = "mask_not_single_channel" if decoded is not None and decoded.ndim == 3 else "bad_mask"
    return kind, path, str(error)


def _check_image(file_name: str, problems: List[Problem]) -> Optional[np.ndarray]:
    """The decoded image, or None after adding its problem."""
    if not os.path.isfile(file_name):
        problems.append(("missing_image", file_name, f"{file_name}: image not found; restore it or remove the record"))
        return None
    try:
        return read_image(file_name)
    except DatasetError as e:
        problems.append(("bad_image", file_name, str(e)))
        return None


def check_record(
    file_name: str, sem_seg_file_name: str, reduce_zero: bool, num_classes: int, ignore_label: int
) -> RecordResult:
    """Read one (image, mask) pair as training would and list what is wrong with it."""
    problems: List[Problem] = []
    image = _check_image(file_name, problems)
    return _check_mask(file_name, image, sem_seg_file_name, reduce_zero, num_classes, ignore_label, problems)


def _check_mask(
    file_name: str,
    image: Optional[np.ndarray],
    sem_seg_file_name: str,
    reduce_zero: bool,
    num_classes: int,
    ignore_label: int,
    problems: List[Problem],
) -> RecordResult:
    empty = np.zeros(0, dtype=np.int64)
    mask = None
    if not os.path.isfile(sem_seg_file_name):
        problems.append(
            ("missing_mask", sem_seg_file_name, f"{sem_seg_file_name}: mask not found; restore it or remove the record")
        )
    else:
        try:
            mask = read_mask(sem_seg_file_name)
        except DatasetError as e:
            problems.append(_mask_problem(sem_seg_file_name, e))
    if mask is None:
        return RecordResult(problems, empty, empty)
    if image is not None and image.shape[:2] != mask.shape:
        problems.append(
            (
                "size_mismatch",
                sem_seg_file_name,
                f"{sem_seg_file_name}: mask is {mask.shape[1]}x{mask.shape[0]} but its image "
                f"{os.path.basename(file_name)} is {image.shape[1]}x{image.shape[0]} (WxH); re-export one of them",
            )
        )
    if reduce_zero:
        mask = reduce_zero_label(mask, ignore_label)
    counts = np.bincount(mask.ravel(), minlength=max(num_classes, ignore_label + 1))
    values = np.flatnonzero(counts)
    bad = values[(values >= num_classes) & (values != ignore_label)]
    if bad.size:
        shown = ", ".join(str(v) for v in bad[:_SHOWN_LABELS]) + (", ..." if bad.size > _SHOWN_LABELS else "")
        after = " after reducing the zero label" if reduce_zero else ""
        problems.append(
            (
                "label_out_of_range",
                sem_seg_file_name,
                f"{sem_seg_file_name}: labels {shown} outside 0..{num_classes - 1} (ignore {ignore_label}){after}; "
                f"is the mask in another label convention (raw vs prepared) or the class count wrong?",
            )
        )
    classes = values[values < num_classes]
    return RecordResult(problems, classes, counts[classes], int(counts[ignore_label]))


def check_any_record(record: dict, num_classes: int, ignore_label: int, classes_key: str) -> RecordResult:
    """Check one record of any split kind by what it holds (``classes_key`` names the metadata's class list, for
    messages): objects (panoptic segments / instance annotations), a semantic map, a classification record's class."""
    problems: List[Problem] = []
    image = _check_image(record["file_name"], problems)
    result = None
    if "sem_seg_file_name" in record:
        reduce_zero = bool(record.get("reduce_zero_label", False))
        args = (record["sem_seg_file_name"], reduce_zero, num_classes, ignore_label, problems)
        result = _check_mask(record["file_name"], image, *args)
        if "category_id" in record and result.classes.size and int(record["category_id"]) not in result.classes:
            problems.append(_class_not_in_mask(record))
    if "pan_seg_file_name" in record or "annotations" in record:
        objects = _check_objects(record, image, num_classes, classes_key, problems)
        result = result or objects  # the semantic map's histogram when there is one, else the objects'
    return result or RecordResult(problems, np.zeros(0, np.int64), np.zeros(0, np.int64))


def _class_not_in_mask(record: dict) -> Problem:
    path = record["sem_seg_file_name"]
    return (
        "class_not_in_mask",
        path,
        f"{path}: class {record['category_id']} of this classification record is not in the mask; the split's "
        f"label counts are stale — run the dataset's preparation script again with --force",
    )


def _check_objects(
    record: dict, image: Optional[np.ndarray], num_classes: int, classes_key: str, problems: List[Problem]
) -> RecordResult:
    """Problems and per-class pixels of a panoptic record's segments or an instance record's annotations."""
    shape = image.shape[:2] if image is not None else None
    pixels = np.zeros(num_classes, dtype=np.int64)
    if "pan_seg_file_name" in record:
        segments = record["segments_info"]
        classes = [s["category_id"] for s in segments]
        try:
            if shape is None:  # no image to compare the PNG's size with: the PNG alone
                ids = read_panoptic_png(record["pan_seg_file_name"], segments, record.get("annotation_file", ""))
            else:
                ids = panoptic_segment_ids(record, shape)
            values, counts = np.unique(ids, return_counts=True)
            area = dict(zip(values.tolist(), counts.tolist()))
            for s in segments:
                if 0 <= s["category_id"] < num_classes:
                    pixels[s["category_id"]] += area.get(int(s["id"]), 0)
        except RecordError as e:
            problems.append((e.kind, e.path, str(e)))
    else:
        classes = [a["category_id"] for a in record["annotations"]]
        if shape is None:
            shape = (record.get("height"), record.get("width"))
        elif (record.get("height"), record.get("width")) not in ((None, None), tuple(shape)):
            path = record.get("annotation_file") or record["file_name"]
            message = (
                f"{path}: image {record['file_name']} is {shape[1]}x{shape[0]} but the JSON says "
                f"{record['width']}x{record['height']} (WxH); the annotations belong to another size of the image"
            )
            problems.append(("size_mismatch", path, message))
        for i, annotation in enumerate(record["annotations"] if None not in shape else ()):
            try:
                area = int(mask_util.area(annotation_rle(record, i, shape)))
            except RecordError as e:
                problems.append((e.kind, e.path, str(e)))
                continue
            if 0 <= annotation["category_id"] < num_classes:
                pixels[annotation["category_id"]] += area
    try:
        vocabulary = f"the metadata's {classes_key}; the annotation file belongs to another dataset, or its metadata"
        check_object_classes(record, classes, num_classes, vocabulary + " lists too few classes")
    except RecordError as e:
        problems.append((e.kind, e.path, str(e)))
    present = np.flatnonzero(pixels)
    return RecordResult(problems, present, pixels[present])


@dataclass
class DatasetReport:
    """Everything check_dataset found in one dataset; ``class_pixels`` / ``class_images`` are (C,) int64."""

    name: str
    class_names: List[str]
    ignore_label: int
    num_images: int = 0
    num_ok: int = 0
    problems: Dict[str, List[Tuple[str, str]]] = field(default_factory=dict)  # kind -> [(path, message)]
    class_pixels: Optional[np.ndarray] = None
    class_images: Optional[np.ndarray] = None
    ignore_pixels: int = 0

    def __post_init__(self) -> None:
        zeros = np.zeros(len(self.class_names), dtype=np.int64)
        self.class_pixels = zeros.copy() if self.class_pixels is None else self.class_pixels
        self.class_images = zeros.copy() if self.class_images is None else self.class_images

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, result: RecordResult) -> None:
        self.num_images += 1
        self.num_ok += not result.problems
        for kind, path, message in result.problems:
            self.problems.setdefault(kind, []).append((path, message))
        self.class_pixels[result.classes] += result.pixels
        self.class_images[result.classes] += 1
        self.ignore_pixels += result.ignore_pixels

    def histogram(self) -> List[dict]:
        """Per class: id, name, pixels, percent of the labelled (non-ignore) pixels, images containing it."""
        total = max(int(self.class_pixels.sum()), 1)
        return [
            {"id": i, "name": name, "pixels": int(p), "percent": 100.0 * int(p) / total, "images": int(n)}
            for i, (name, p, n) in enumerate(zip(self.class_names, self.class_pixels, self.class_images))
        ]

    def to_dict(self) -> dict:
        """JSON-ready: counts, every problem, the histogram."""
        return {
            "name": self.name,
            "num_images": self.num_images,
            "num_ok": self.num_ok,
            "problem_counts": {k: len(v) for k, v in self._sorted_problems()},
            "problems": {k: [{"file": p, "message": m} for p, m in v] for k, v in self._sorted_problems()},
            "ignore_pixels": self.ignore_pixels,
            "histogram": self.histogram(),
        }

    def format(self, max_problems: int = 10) -> str:
        """Human summary: counts, problems by kind (first ``max_problems`` each), the class histogram."""
        bad = self.num_images - self.num_ok
        lines = [f"== {self.name}: {self.num_images} images, {self.num_ok} ok, {bad} with problems"]
        for kind, items in self._sorted_problems():
            lines.append(f"  {kind}: {len(items)}")
            lines.extend(f"    {message}" for _, message in items[:max_problems])
            if len(items) > max_problems:
                lines.append(f"    ... {len(items) - max_problems} more (all of them with --json)")
        labelled = int(self.class_pixels.sum())
        lines.append(f"  labelled pixels: {labelled}, ignore ({self.ignore_label}) pixels: {self.ignore_pixels}")
        rows = [(h["id"], h["name"], h["pixels"], f"{h['percent']:.2f}", h["images"]) for h in self.histogram()]
        lines.append(tabulate(rows, headers=["id", "class", "pixels", "%", "images"], tablefmt="simple"))
        return "\n".join(lines)

    def _sorted_problems(self) -> List[Tuple[str, List[Tuple[str, str]]]]:
        return [(k, self.problems[k]) for k in PROBLEM_KINDS if k in self.problems]


def _results(items: Sequence[dict], task, workers: int) -> Iterator[RecordResult]:
    if workers <= 1:
        yield from map(task, items)
        return
    chunksize = max(1, min(64, len(items) // (workers * 16)))
    with process_pool(workers) as pool:
        yield from pool.map(task, items, chunksize=chunksize)


def check_records(
    name: str,
    records: Sequence[dict],
    class_names: Sequence[str],
    ignore_label: int = 255,
    workers: int = 0,
    progress: bool = True,
    extra_problems: Optional[Dict[str, List[Problem]]] = None,
    classes_key: str = "stuff_classes",
) -> DatasetReport:
    """Check every record of a dataset (:func:`check_any_record`); ``extra_problems`` (by ``file_name``) adds
    problems found across records, such as pairs without a real mask."""
    report = DatasetReport(name, list(class_names), ignore_label)
    task = functools.partial(
        check_any_record, num_classes=len(class_names), ignore_label=ignore_label, classes_key=classes_key
    )
    extra = extra_problems or {}
    results = _results(records, task, workers)
    for record, result in tqdm(zip(records, results), total=len(records), desc=name, unit="img", disable=not progress):
        result.problems.extend(extra.get(record["file_name"], ()))
        report.add(result)
    return report


def pairs_without_real_mask(records: Sequence[dict], real_dataset: str) -> Dict[str, List[Problem]]:
    """Problems, by image, of the synthetic records (``real_stem`` key) whose real mask ``<real_stem>.*`` is not in
    ``real_dataset``: hardness-aware re-sampling ranks real masks, so ``tools/resample_syn.py`` refuses such pairs.
    A real dataset that fails to load is raised (DatasetError), as the synthetic split cannot be checked without it."""
    synthetic = [r for r in records if "real_stem" in r]
    if not synthetic:
        return {}
    real = DatasetCatalog.get(real_dataset)
    stems = {os.path.splitext(os.path.basename(r["sem_seg_file_name"]))[0] for r in real}
    fix = (
        f"add the real image and mask it was generated from to '{real_dataset}', or remove the pair "
        f"({command_hint('resample', '--allow-orphans')} leaves such pairs out)"
    )
    return {
        r["file_name"]: [
            (
                "no_real_mask",
                r["file_name"],
                f"{r['file_name']}: synthetic pair of real mask '{r['real_stem']}', which is not in '{real_dataset}'; "
                f"{fix}",
            )
        ]
        for r in synthetic
        if r["real_stem"] not in stems
    }


def check_dataset(name: str, workers: int = 0, progress: bool = True) -> DatasetReport:
    """Check a registered dataset, reading its class names and ignore label from MetadataCatalog.

    A loader that fails (DatasetError: a missing folder, images without masks ...) or returns nothing is reported
    as a ``load_error`` rather than raised, so one bad dataset does not hide the others' results."""
    metadata = MetadataCatalog.get(name)
    # An instance split's metadata lists its thing classes alone, which its records number 0..T-1.
    classes_key = "stuff_classes" if metadata.get("stuff_classes") else "thing_classes"
    class_names: Optional[List[str]] = metadata.get(classes_key)
    if not class_names:
        raise DatasetError(
            f"dataset '{name}' has neither stuff_classes nor thing_classes in MetadataCatalog; register its metadata"
        )
    ignore_label = int(metadata.get("ignore_label", 255))
    try:
        records = DatasetCatalog.get(name)
    except DatasetError as e:
        report = DatasetReport(name, list(class_names), ignore_label)
        report.problems["load_error"] = [(name, str(e))]
        return report
    real_dataset = metadata.get("real_dataset")
    try:
        extra = pairs_without_real_mask(records, real_dataset) if real_dataset else {}
    except DatasetError as e:
        report = DatasetReport(name, list(class_names), ignore_label)
        report.problems["load_error"] = [(real_dataset, f"real dataset of '{name}': {e}")]
        return report
    report = check_records(name, records, class_names, ignore_label, workers, progress, extra, classes_key)
    if not records:
        report.problems["load_error"] = [(name, f"dataset '{name}' has no records; check its folders")]
    return report
