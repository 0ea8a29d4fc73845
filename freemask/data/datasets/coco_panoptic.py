"""COCO 2017 panoptic (133 categories) and instance (80 things) splits, under Mask2Former's names and layout.

``coco/annotations/panoptic_{train,val}2017.json`` + ``coco/panoptic_{train,val}2017/`` are the official panoptic
release; ``coco/panoptic_semseg_{train,val}2017/`` is written by ``datasets/prepare_coco_panoptic_sem_seg.py`` (the
``*_with_sem_seg`` splits need it); ``coco/annotations/instances_{train,val}2017.json`` are read with pycocotools.
Categories, flags and colours come from ``meta/coco_panoptic_133.json``; the root is ``$DETECTRON2_DATASETS`` at
the time a split is loaded.
"""

import functools
import os

from ...commands import hint
from ..catalog import datasets_root
from .class_meta import read_meta_file
from .panoptic import PanopticCategories, load_coco_panoptic_json, register_instance_split, register_panoptic_split

COCO_SPLITS = ("train2017", "val2017")
_HINT = (
    "download the COCO 2017 images and panoptic/instance annotations from cocodataset.org and unzip them under "
    "$DETECTRON2_DATASETS/coco (see datasets/README.md)"
)
_SEM_HINT = f"write the semantic maps with {hint('prepare', 'coco-panoptic-sem-seg')} (see datasets/README.md)"


def coco_panoptic_categories() -> PanopticCategories:
    """The 133 COCO panoptic categories (80 things, then 53 stuff) in contiguous order."""
    categories = PanopticCategories.from_json_list(read_meta_file("coco_panoptic_133.json")["categories"])
    if len(categories.ids) != 133 or sum(categories.isthing) != 80:
        raise ValueError("meta/coco_panoptic_133.json must list 133 categories, 80 of them things; reinstall freemask")
    return categories


def coco_path(*parts: str) -> str:
    """``$DETECTRON2_DATASETS/coco/<parts>``, read at each call."""
    return os.path.join(datasets_root(), "coco", *parts)


def load_coco_panoptic(split: str, with_sem_seg: bool) -> list:
    """Records of COCO's panoptic ``split`` (train2017 | val2017), with the 133-class semantic maps if asked."""
    return load_coco_panoptic_json(
        coco_path("annotations", f"panoptic_{split}.json"),
        coco_path(split),
        coco_path(f"panoptic_{split}"),
        coco_panoptic_categories(),
        sem_seg_root=coco_path(f"panoptic_semseg_{split}") if with_sem_seg else None,
        hint=_SEM_HINT if with_sem_seg else _HINT,
    )


def register_coco_panoptic() -> None:
    """Register ``coco_2017_{train,val}_panoptic[_with_sem_seg]`` and ``coco_2017_{train,val}`` (no disk access)."""
    categories = coco_panoptic_categories()
    for split in COCO_SPLITS:
        short = split[: -len("2017")]
        paths = {
            "image_root": functools.partial(coco_path, split),
            "panoptic_root": functools.partial(coco_path, f"panoptic_{split}"),
            "panoptic_json": functools.partial(coco_path, "annotations", f"panoptic_{split}.json"),
            "json_file": functools.partial(coco_path, "annotations", f"instances_{split}.json"),
        }
        register_panoptic_split(
            f"coco_2017_{short}_panoptic",
            functools.partial(load_coco_panoptic, split, False),
            categories,
            paths,
            "coco_panoptic_seg",
        )
        register_panoptic_split(
            f"coco_2017_{short}_panoptic_with_sem_seg",
            functools.partial(load_coco_panoptic, split, True),
            categories,
            {**paths, "sem_seg_root": functools.partial(coco_path, f"panoptic_semseg_{split}")},
            "coco_panoptic_seg",
        )
        register_instance_split(
            f"coco_2017_{short}", paths["json_file"], paths["image_root"], categories, "coco", _HINT
        )
