"""Panoptic and instance datasets in COCO's formats, as detectron2/Mask2Former records.

Why one module for every family (COCO, ADE20K, toy): they differ only by paths and category tables, which live in
``meta/*.json`` and in :class:`PanopticCategories`; the readers, the checks and the metadata are written once.

Panoptic record (one per image of the panoptic JSON)::

    {"file_name": str, "image_id": int | str, "height": int, "width": int,
     "annotation_file": str,                   # the panoptic JSON, named by every error about the record
     "pan_seg_file_name": str,                 # RGB PNG, segment id = R + 256 G + 256^2 B, 0 = void
     "segments_info": [{"id": int, "category_id": int (contiguous 0..K-1), "isthing": bool, "iscrowd": int,
                        "area": int, "bbox": [x, y, w, h]}],
     "sem_seg_file_name": str, "reduce_zero_label": bool}   # only where the dataset has semantic maps

Instance record (pycocotools)::

    {"file_name": str, "image_id": int | str, "height": int, "width": int,
     "annotation_file": str,                   # the instance JSON, named by every error about the record
     "annotations": [{"id": the JSON's annotation id (when it has one),
                      "segmentation": polygons [[x0, y0, x1, y1, ...], ...] | RLE {"size", "counts"},
                      "bbox": [x, y, w, h] (float), "bbox_mode": "XYWH_ABS", "category_id": int (contiguous),
                      "iscrowd": int}]}

The segments and annotations are read and checked (ids both ways, empty or malformed masks, sizes) where they are
decoded, by ``freemask/data/object_records.py``, so a bad one is a sample DATALOADER.SKIP_BAD_SAMPLES can skip; the
loaders only check what makes the whole file unusable (a missing file, a category outside the dataset).

Contiguous ids follow Mask2Former: a panoptic category's contiguous id is its position in the full category list
(things and stuff together), ``thing_dataset_id_to_contiguous_id`` holds the things, and
``stuff_dataset_id_to_contiguous_id`` holds *every* category (so the semantic evaluator sees all K classes); an
instance dataset numbers its thing categories 0..T-1.
"""

import contextlib
import functools
import io
import json
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..catalog import DatasetCatalog, MetadataCatalog
from ..errors import DatasetError

BOX_MODE_XYWH_ABS = "XYWH_ABS"  # detectron2's BoxMode.XYWH_ABS: absolute x, y, width, height


def segment_bbox(mask: np.ndarray) -> List[int]:
    """[x, y, w, h] of the True pixels of a bool (H, W) mask (COCO's integer box of a segment)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]


# ------------------------------------------------------------------------------------------------------ categories
@dataclass(frozen=True)
class PanopticCategories:
    """The categories of a panoptic dataset in contiguous order: dataset ids, names, isthing flags, colours."""

    ids: Tuple[int, ...]
    names: Tuple[str, ...]
    isthing: Tuple[bool, ...]
    colors: Tuple[Tuple[int, int, int], ...]

    def __post_init__(self) -> None:
        n = len(self.ids)
        if not (len(self.names) == len(self.isthing) == len(self.colors) == n) or len(set(self.ids)) != n:
            raise ValueError(f"panoptic categories need as many distinct ids, names, flags and colours, got {self}")

    @classmethod
    def from_json_list(cls, categories: Sequence[Mapping[str, Any]]) -> "PanopticCategories":
        """From COCO-style ``[{"id", "name", "isthing", "color"}, ...]`` in contiguous order."""
        return cls(
            tuple(int(c["id"]) for c in categories),
            tuple(c["name"] for c in categories),
            tuple(bool(c["isthing"]) for c in categories),
            tuple(tuple(c["color"]) for c in categories),
        )

    @property
    def contiguous(self) -> Dict[int, int]:
        """Dataset id -> contiguous id (position in the list), for every category."""
        return {cat_id: index for index, cat_id in enumerate(self.ids)}

    @property
    def thing_contiguous(self) -> Dict[int, int]:
        """Dataset id -> contiguous id of the things only (Mask2Former's ``thing_dataset_id_to_contiguous_id``)."""
        return {cat_id: i for i, (cat_id, thing) in enumerate(zip(self.ids, self.isthing)) if thing}

    def panoptic_metadata(self) -> Dict[str, Any]:
        """Metadata of a panoptic dataset, with Mask2Former's keys and conventions (see the module docstring)."""
        things = [i for i, thing in enumerate(self.isthing) if thing]
        return {
            "thing_classes": [self.names[i] for i in things],
            "thing_colors": [list(self.colors[i]) for i in things],
            "stuff_classes": list(self.names),
            "stuff_colors": [list(c) for c in self.colors],
            "thing_dataset_id_to_contiguous_id": self.thing_contiguous,
            "stuff_dataset_id_to_contiguous_id": self.contiguous,
            "ignore_label": 255,
        }

    def instance_metadata(self) -> Dict[str, Any]:
        """Metadata of the instance dataset of the same things, numbered 0..T-1."""
        things = [i for i, thing in enumerate(self.isthing) if thing]
        return {
            "thing_classes": [self.names[i] for i in things],
            "thing_colors": [list(self.colors[i]) for i in things],
            "thing_dataset_id_to_contiguous_id": {self.ids[i]: k for k, i in enumerate(things)},
        }


# --------------------------------------------------------------------------------------------------------- loaders
def read_json(path: str, hint: str, what: str = "") -> Dict[str, Any]:
    """The JSON file ``path``; a missing or unreadable one is one DatasetError line naming it (as ``what``, when
    given) and ending with ``hint``, the fix."""
    if not os.path.isfile(path):
        raise DatasetError(f"{what} not found: {path}; {hint}" if what else f"{path} not found; {hint}")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path}: not a readable JSON file ({e}); {hint}") from None


def load_coco_panoptic_json(
    json_file: str,
    image_root: str,
    panoptic_root: str,
    categories: PanopticCategories,
    sem_seg_root: Optional[str] = None,
    image_ext: str = ".jpg",
    reduce_zero_label: bool = False,
    hint: str = "see datasets/README.md",
) -> List[dict]:
    """Panoptic records (module docstring) of a COCO panoptic JSON, sorted as the JSON lists them.

    Checked here, cheaply (no PNG is decoded): every annotation names an existing panoptic PNG, image and (with
    ``sem_seg_root``) semantic map, and every segment's category is one of ``categories``; each failure is one
    DatasetError line naming the JSON and the file. Segment ids of a PNG are checked when it is decoded
    (:func:`freemask.data.panoptic_png.read_panoptic_png`).
    """
    data = read_json(json_file, hint, "panoptic JSON")
    images = {img["id"]: img for img in data.get("images", [])}
    contiguous, things = categories.contiguous, set(categories.thing_contiguous)
    records = []
    for ann in data.get("annotations", []):
        pan = os.path.join(panoptic_root, ann["file_name"])
        stem = os.path.splitext(ann["file_name"])[0]
        image = images.get(ann["image_id"], {})
        file_name = os.path.join(image_root, image.get("file_name", stem + image_ext))
        for path, what in [(pan, "panoptic PNG"), (file_name, "image")]:
            if not os.path.isfile(path):
                raise DatasetError(f"{json_file}: names {what} {path}, which does not exist; {hint}")
        segments = []
        for seg in ann["segments_info"]:
            if seg["category_id"] not in contiguous:
                raise DatasetError(
                    f"{json_file}: segment {seg['id']} of {ann['file_name']} has category_id {seg['category_id']}, "
                    f"not one of the dataset's {len(contiguous)} categories; the JSON belongs to another dataset"
                )
            segments.append(
                {
                    "id": int(seg["id"]),
                    "category_id": contiguous[seg["category_id"]],
                    "isthing": seg["category_id"] in things,
                    "iscrowd": int(seg.get("iscrowd", 0)),
                    "area": int(seg.get("area", 0)),
                    "bbox": list(seg.get("bbox", [])),
                }
            )
        record = {
            "file_name": file_name,
            "image_id": ann["image_id"],
            "height": image.get("height"),
            "width": image.get("width"),
            "annotation_file": json_file,
            "pan_seg_file_name": pan,
            "segments_info": segments,
        }
        if sem_seg_root is not None:
            sem = os.path.join(sem_seg_root, stem + ".png")
            if not os.path.isfile(sem):
                raise DatasetError(f"{json_file}: the semantic map of {ann['file_name']} is missing: {sem}; {hint}")
            record.update(sem_seg_file_name=sem, reduce_zero_label=reduce_zero_label)
        records.append(record)
    if not records:
        raise DatasetError(f"{json_file}: no annotations; the panoptic split is empty — {hint}")
    return records


def load_coco_instances_json(
    json_file: str, image_root: str, thing_dataset_id_to_contiguous_id: Mapping[int, int], hint: str = ""
) -> List[dict]:
    """Instance records (module docstring) of a COCO instance JSON read with pycocotools, images sorted by id.

    Images without annotations are kept (detectron2 filters them at training time, not here); an annotation whose
    category is not in the table is a DatasetError naming the JSON."""
    from pycocotools.coco import COCO  # only instance datasets need pycocotools

    if not os.path.isfile(json_file):
        raise DatasetError(f"instance JSON not found: {json_file}; {hint or 'see datasets/README.md'}")
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        try:
            coco = COCO(json_file)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DatasetError(f"{json_file}: not a COCO instance JSON ({e}); re-download or re-prepare it") from None
    records = []
    for image_id in sorted(coco.imgs, key=str):
        image = coco.imgs[image_id]
        annotations = []
        for ann in coco.imgToAnns.get(image_id, []):
            if ann["category_id"] not in thing_dataset_id_to_contiguous_id:
                raise DatasetError(
                    f"{json_file}: annotation {ann.get('id')} of image {image_id} has category_id "
                    f"{ann['category_id']}, not one of the dataset's {len(thing_dataset_id_to_contiguous_id)} thing "
                    f"categories; the JSON belongs to another dataset"
                )
            annotations.append(
                {
                    **({"id": ann["id"]} if "id" in ann else {}),
                    "segmentation": ann.get("segmentation"),
                    "bbox": [float(v) for v in ann["bbox"]],
                    "bbox_mode": BOX_MODE_XYWH_ABS,
                    "category_id": thing_dataset_id_to_contiguous_id[ann["category_id"]],
                    "iscrowd": int(ann.get("iscrowd", 0)),
                }
            )
        records.append(
            {
                "file_name": os.path.join(image_root, image["file_name"]),
                "image_id": image_id,
                "height": image["height"],
                "width": image["width"],
                "annotation_file": json_file,
                "annotations": annotations,
            }
        )
    if not records:
        raise DatasetError(f"{json_file}: no images; the instance split is empty — {hint or 'check the file'}")
    return records


# ---------------------------------------------------------------------------------------------------- registration
PathFn = Callable[[], str]


def register_panoptic_split(
    name: str,
    load: Callable[[], List[dict]],
    categories: PanopticCategories,
    paths: Mapping[str, PathFn],
    evaluator_type: str,
) -> None:
    """Register a panoptic split lazily: ``load`` runs on first use; ``paths`` (panoptic_root, panoptic_json,
    image_root, json_file, sem_seg_root ...) are metadata computed on access, so they follow
    ``$DETECTRON2_DATASETS`` as the loaders do. A name already registered is left as it is."""
    if name in DatasetCatalog:
        return
    DatasetCatalog.register(name, load)
    MetadataCatalog.get(name).set(evaluator_type=evaluator_type, **categories.panoptic_metadata()).set_lazy(**paths)


def register_instance_split(
    name: str,
    json_file: PathFn,
    image_root: PathFn,
    categories: PanopticCategories,
    evaluator_type: str = "coco",
    hint: str = "",
) -> None:
    """Register a COCO-format instance split lazily (pycocotools reads ``json_file()`` on first use)."""
    if name in DatasetCatalog:
        return
    meta = categories.instance_metadata()
    table = meta["thing_dataset_id_to_contiguous_id"]
    DatasetCatalog.register(name, lambda: load_coco_instances_json(json_file(), image_root(), table, hint))
    MetadataCatalog.get(name).set(evaluator_type=evaluator_type, **meta).set_lazy(
        json_file=json_file, image_root=image_root
    )


# ------------------------------------------------------------------------------------------------ ADE20K's layout
ADE_LAYOUT_SPLITS = {"train": "training", "val": "validation"}


def register_ade_layout_splits(
    prefix: str,
    root: Callable[..., str],
    categories: PanopticCategories,
    sem_seg_dir: str,
    evaluator_type: str,
    hint: str,
    reduce_zero_label: bool = False,
) -> None:
    """Register ``<prefix>_panoptic_{train,val}`` and ``<prefix>_instance_{train,val}`` for a tree laid out as
    Mask2Former prepares ADE20K: ``images/<folder>``, ``ade20k_panoptic_<split>/`` + ``.json``,
    ``<sem_seg_dir>/<folder>`` and ``ade20k_instance_<split>.json`` under ``root(*parts)``, which resolves the
    dataset root at each call."""
    for split, folder in ADE_LAYOUT_SPLITS.items():
        paths = {
            "image_root": functools.partial(root, "images", folder),
            "panoptic_root": functools.partial(root, f"ade20k_panoptic_{split}"),
            "panoptic_json": functools.partial(root, f"ade20k_panoptic_{split}.json"),
            "sem_seg_root": functools.partial(root, sem_seg_dir, folder),
            "json_file": functools.partial(root, f"ade20k_instance_{split}.json"),
        }
        load = functools.partial(load_ade_layout, paths, categories, reduce_zero_label, hint)
        register_panoptic_split(f"{prefix}_panoptic_{split}", load, categories, paths, evaluator_type)
        register_instance_split(
            f"{prefix}_instance_{split}", paths["json_file"], paths["image_root"], categories, "coco", hint
        )


def load_ade_layout(
    paths: Mapping[str, PathFn], categories: PanopticCategories, reduce_zero_label: bool, hint: str
) -> List[dict]:
    """Panoptic records with semantic maps of one split of an ADE-layout tree (``paths``: callables giving
    panoptic_json, image_root, panoptic_root, sem_seg_root)."""
    return load_coco_panoptic_json(
        paths["panoptic_json"](),
        paths["image_root"](),
        paths["panoptic_root"](),
        categories,
        sem_seg_root=paths["sem_seg_root"](),
        reduce_zero_label=reduce_zero_label,
        hint=hint,
    )
