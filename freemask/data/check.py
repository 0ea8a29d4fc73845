"""Validate a registered dataset file by file before a long run finds its one bad file at iteration 80k.

Each record is checked exactly as training reads it (``mapper.read_image`` / ``read_mask`` / ``reduce_zero_label``):
the image decodes completely (a truncated JPEG is a problem, although OpenCV would decode it grey), the mask exists
and is a single-channel label map of the image's size, and every label is a class (0..C-1) or the ignore label; a
synthetic split's pairs must come from a mask of its real dataset (``tools/resample_syn.py`` rejects the others).
Workers return only a few counters per record (never pixels), and results are folded in as they stream back, so
memory stays flat over hundreds of thousands of files. Tools/check_dataset.py is the command line.
"""

import functools
import os
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from tabulate import tabulate
from tqdm import tqdm

from ..utils.worker_pool import process_pool
from .catalog import DatasetCatalog, MetadataCatalog
from .errors import DatasetError
from .mapper import read_image, read_mask, reduce_zero_label

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


def check_record(
    file_name: str, sem_seg_file_name: str, reduce_zero: bool, num_classes: int, ignore_label: int
) -> RecordResult:
    """Read one (image, mask) pair as training would and list what is wrong with it."""
    problems: List[Problem] = []
    empty = np.zeros(0, dtype=np.int64)
    image = mask = None
    if not os.path.isfile(file_name):
        problems.append(("missing_image", file_name, f"{file_name}: image not found; restore it or remove the record"))
    else:
        try:
            image = read_image(file_name)
        except DatasetError as e:
            problems.append(("bad_image", file_name, str(e)))
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


def _check_tuple(item: Tuple[str, str, bool], num_classes: int, ignore_label: int) -> RecordResult:
    return check_record(*item, num_classes, ignore_label)


def _results(items: Sequence[Tuple[str, str, bool]], task, workers: int) -> Iterator[RecordResult]:
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
) -> DatasetReport:
    """Check every record (``file_name``, ``sem_seg_file_name``, optional ``reduce_zero_label``) of a dataset;
    ``extra_problems`` (by ``file_name``) adds problems found across records, such as pairs without a real mask."""
    report = DatasetReport(name, list(class_names), ignore_label)
    items = [(r["file_name"], r["sem_seg_file_name"], bool(r.get("reduce_zero_label", False))) for r in records]
    task = functools.partial(_check_tuple, num_classes=len(class_names), ignore_label=ignore_label)
    extra = extra_problems or {}
    results = _results(items, task, workers)
    for item, result in tqdm(zip(items, results), total=len(items), desc=name, unit="img", disable=not progress):
        result.problems.extend(extra.get(item[0], ()))
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
        f"(resample_syn.py --allow-orphans leaves such pairs out)"
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
    class_names: Optional[List[str]] = metadata.get("stuff_classes")
    if not class_names:
        raise DatasetError(f"dataset '{name}' has no stuff_classes in MetadataCatalog; register its metadata first")
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
    report = check_records(name, records, class_names, ignore_label, workers, progress, extra)
    if not records:
        report.problems["load_error"] = [(name, f"dataset '{name}' has no records; check its folders")]
    return report
