"""The objects of panoptic and instance records, read and checked once for training, evaluation and the checker.

Why one module: a bad object (a panoptic segment with no pixel in its PNG, an instance annotation with
``segmentation: []``, an RLE whose run lengths do not add up to its image) used to train silently on an empty mask,
or stop with a pycocotools traceback that named no file. The mappers (``mappers/instance.py``,
``mappers/all_task.py``) and ``tools/check_dataset.py`` (``check.py``) read objects only through these functions,
which raise :class:`RecordError`: one line naming the annotation file, the image, the annotation and the fix, and a
problem kind for the checker. A training loader with DATALOADER.SKIP_BAD_SAMPLES replaces such a sample and counts it
(``loading/build.py``, ``MapDataset``), as it does a corrupt image; without it the run stops on that line.

Records name the JSON they were read from in ``annotation_file`` (the loaders of ``datasets/panoptic.py`` set it)
and their annotations keep the JSON's ``id``; a record built without them is named by its image.
"""

import numbers
from dataclasses import dataclass
from typing import Any, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pycocotools.mask as mask_util

from ..commands import hint
from .errors import RecordError
from .panoptic_png import read_panoptic_png

SKIP_HINT = (
    f"or set DATALOADER.SKIP_BAD_SAMPLES True to train without this image ({hint('check-dataset')} lists every such "
    "annotation)"
)

Shape = Tuple[int, int]


# ------------------------------------------------------------------------------------------------------- panoptic
def panoptic_segment_ids(record: Mapping[str, Any], shape: Shape) -> np.ndarray:
    """int32 (H, W) segment ids of a panoptic record's PNG, checked against its ``segments_info`` both ways
    (:func:`read_panoptic_png`) and against the image's ``shape`` (H, W)."""
    path = record["pan_seg_file_name"]
    ids = read_panoptic_png(path, record["segments_info"], record.get("annotation_file", ""))
    if ids.shape != tuple(shape):
        raise RecordError(
            f"{path}: panoptic PNG is {ids.shape[1]}x{ids.shape[0]} but its image {record['file_name']} is "
            f"{shape[1]}x{shape[0]} (WxH); re-export the PNG at the image's size, {SKIP_HINT}",
            kind="size_mismatch",
            path=path,
        )
    return ids


# ------------------------------------------------------------------------------------------------------- instance
def instance_masks(record: Mapping[str, Any], shape: Shape) -> Tuple[List[np.ndarray], List[int]]:
    """uint8 (H, W) bit masks and contiguous classes of the non-crowd annotations of an instance record, each
    checked by :func:`annotation_rle`."""
    indices = [i for i, a in enumerate(record["annotations"]) if not a.get("iscrowd", 0)]
    masks = [mask_util.decode(annotation_rle(record, i, shape)) for i in indices]
    return masks, [int(record["annotations"][i]["category_id"]) for i in indices]


def check_annotations(record: Mapping[str, Any], shape: Shape) -> None:
    """Check every annotation of an instance record, crowd ones included, without decoding a mask: what the test
    mapper does before the instance evaluator gives the annotations to pycocotools."""
    for index in range(len(record["annotations"])):
        annotation_rle(record, index, shape)


def annotation_rle(record: Mapping[str, Any], index: int, shape: Shape) -> dict:
    """The compressed RLE of annotation ``index`` of an instance record on an image of ``shape`` (H, W).

    RecordError (kind ``empty_annotation``) for a segmentation with no pixel: ``[]``, polygons of no area, an RLE
    of zeros; (kind ``bad_annotation``) for one that is malformed: a polygon that is not an even count of at least 6
    numbers, an RLE without ``size`` / ``counts`` or whose run lengths do not add up to its image (pycocotools would
    decode it into garbage or stop with "Invalid RLE mask representation"); (kind ``size_mismatch``) for an RLE of
    another size than the image."""
    segmentation = record["annotations"][index].get("segmentation")
    where = _Where(record.get("annotation_file") or record["file_name"], _annotation_name(record, index))
    if isinstance(segmentation, list):
        return _polygons_rle(segmentation, shape, where)
    if isinstance(segmentation, dict):
        return _checked_rle(segmentation, shape, where)
    raise where.malformed(f"segmentation must be polygons or an RLE dict, got {type(segmentation).__name__}")


def _annotation_name(record: Mapping[str, Any], index: int) -> str:
    """``<annotation file>: annotation <id> of image <file>``, or ``<image>: annotation #<index>`` without a file."""
    annotation = record["annotations"][index]
    label = f"annotation {annotation['id']}" if "id" in annotation else f"annotation #{index}"
    source = record.get("annotation_file")
    return f"{source}: {label} of image {record['file_name']}" if source else f"{record['file_name']}: {label}"


@dataclass(frozen=True)
class _Where:
    """The file an annotation's problem is filed under and the name of the annotation in messages."""

    path: str
    name: str

    def empty(self, what: str) -> RecordError:
        return RecordError(
            f"{self.name}: segmentation {what}, so the object has no pixel; draw it again or delete the annotation, "
            f"{SKIP_HINT}",
            kind="empty_annotation",
            path=self.path,
        )

    def malformed(
        self, what: str, kind: str = "bad_annotation", fix: str = "fix or delete the annotation"
    ) -> RecordError:
        return RecordError(f"{self.name}: {what}; {fix}, {SKIP_HINT}", kind=kind, path=self.path)


def _polygons_rle(polygons: list, shape: Shape, where: _Where) -> dict:
    if not polygons or all(isinstance(p, list) and not p for p in polygons):
        raise where.empty(f"is empty ({polygons})")
    for k, polygon in enumerate(polygons):
        numbers_only = isinstance(polygon, list) and all(
            isinstance(v, numbers.Real) and not isinstance(v, bool) for v in polygon
        )
        if not numbers_only or len(polygon) < 6 or len(polygon) % 2:
            found = f"{len(polygon)} values" if isinstance(polygon, list) else f"a {type(polygon).__name__}"
            raise where.malformed(
                f"polygon {k} is not [x0, y0, x1, y1, ...] with at least 3 points (an even count of at least 6 "
                f"numbers): it is {found}",
            )
    if not any(_polygon_area(p) > 0 for p in polygons):
        raise where.empty("is polygons of area 0 (every point on one line)")
    return mask_util.merge(mask_util.frPyObjects(polygons, *shape))


def _polygon_area(polygon: Sequence[float]) -> float:
    """Area of ``[x0, y0, x1, y1, ...]`` by the shoelace formula (a geometric test: a valid tiny object may still
    rasterise to no pixel, which the mappers drop as they drop objects the crop removed)."""
    xy = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _checked_rle(rle: dict, shape: Shape, where: _Where) -> dict:
    size, counts = rle.get("size"), rle.get("counts")
    if size is None or counts is None:
        missing = " and ".join(k for k in ("size", "counts") if rle.get(k) is None)
        raise where.malformed(f"RLE without {missing}")
    if not isinstance(size, (list, tuple)):
        raise where.malformed(f"RLE size must be [height, width], got {size!r}")
    if list(size) != list(shape):
        raise where.malformed(
            f"RLE of size {list(size)} (height, width) on an image of {shape[0]}x{shape[1]} (HxW)",
            kind="size_mismatch",
            fix="the annotation belongs to another image or size: fix it or delete it",
        )
    if isinstance(counts, list):
        runs: Optional[List[int]] = counts if all(isinstance(c, int) and c >= 0 for c in counts) else None
    else:
        runs = _compressed_rle_counts(counts)
    pixels = shape[0] * shape[1]
    if runs is None or any(c < 0 for c in runs) or sum(runs) != pixels:
        found = "it is not a COCO RLE" if runs is None else f"its run lengths add up to {sum(runs)} pixels"
        raise where.malformed(f"invalid RLE: {found}, not the {shape[1]}x{shape[0]} = {pixels} of its image")
    if not sum(runs[1::2]):
        raise where.empty("is an RLE of zeros")
    return mask_util.frPyObjects(rle, *shape) if isinstance(counts, list) else rle


def _compressed_rle_counts(counts: Any) -> Optional[List[int]]:
    """Run lengths of a COCO compressed RLE string (or bytes); None when it is not one: a character outside the
    alphabet, a number cut short. The format (cocodataset/cocoapi, common/maskApi.c, rleFrString): each number in
    5-bit groups, low first, as characters 48 + group, bit 0x20 set while more groups follow, bit 0x10 of the last
    group the sign; from the third number on, each is stored as its difference to the number two before."""
    if isinstance(counts, bytes):
        try:
            counts = counts.decode("ascii")
        except UnicodeDecodeError:
            return None
    if not isinstance(counts, str):
        return None
    runs: List[int] = []
    value = shift = 0
    for char in counts:
        group = ord(char) - 48
        if not 0 <= group < 64:
            return None
        value |= (group & 0x1F) << shift
        shift += 5
        if group & 0x20:
            continue
        if group & 0x10:
            value -= 1 << shift
        runs.append(value + (runs[-2] if len(runs) > 2 else 0))
        value = shift = 0
    return None if shift else runs


# -------------------------------------------------------------------------------------------------------- classes
def check_object_classes(record: Mapping[str, Any], classes: Sequence[int], num_classes: int, vocabulary: str) -> None:
    """RecordError (kind ``category_out_of_range``) naming the record's file when a class of ``classes`` is not
    in ``0..num_classes-1``; ``vocabulary`` says whose classes those are and how to fix a mismatch."""
    bad = sorted({int(c) for c in classes if not 0 <= int(c) < num_classes})
    if bad:
        path = record.get("annotation_file") or record.get("pan_seg_file_name") or record["file_name"]
        raise RecordError(
            f"{path}: objects of image {record['file_name']} have classes {bad}, not among the {num_classes} "
            f"classes of {vocabulary}",
            kind="category_out_of_range",
            path=path,
        )
