"""Panoptic and instance splits of the toy dataset (``tools/make_toy_dataset.py``), registered like ADE20K's.

``toy_panoptic_{train,val}`` read ``toy/ADEChallengeData2016/ade20k_panoptic_{train,val}[.json]`` with the raw toy
semantic masks (``reduce_zero_label``); ``toy_instance_{train,val}`` read ``ade20k_instance_{train,val}.json``.
Category ids are the raw toy labels 1..6; car and person are things.
"""

import functools
import os

from .panoptic import PanopticCategories, load_coco_panoptic_json, register_instance_split, register_panoptic_split
from .toy import REAL_DIR, TOY_CLASSES, TOY_COLORS, toy_root

THINGS = ("car", "person")
# dataset split -> image folder
TOY_PANOPTIC_SPLITS = {"train": "training", "val": "validation"}
_GENERATE = "generate it with `python tools/make_toy_dataset.py` (it writes the panoptic files too)"


def toy_panoptic_categories() -> PanopticCategories:
    return PanopticCategories(
        tuple(range(1, len(TOY_CLASSES) + 1)),
        TOY_CLASSES,
        tuple(name in THINGS for name in TOY_CLASSES),
        tuple(tuple(c) for c in TOY_COLORS),
    )


def toy_path(*parts: str) -> str:
    """``$DETECTRON2_DATASETS/toy/ADEChallengeData2016/<parts>``, read at each call."""
    return os.path.join(toy_root(), REAL_DIR, *parts)


def _load(split: str) -> list:
    folder = TOY_PANOPTIC_SPLITS[split]
    return load_coco_panoptic_json(
        toy_path(f"ade20k_panoptic_{split}.json"),
        toy_path("images", folder),
        toy_path(f"ade20k_panoptic_{split}"),
        toy_panoptic_categories(),
        sem_seg_root=toy_path("annotations", folder),
        reduce_zero_label=True,
        hint=_GENERATE,
    )


def register_toy_panoptic() -> None:
    """Register ``toy_panoptic_{train,val}`` and ``toy_instance_{train,val}`` (no disk access)."""
    categories = toy_panoptic_categories()
    for split, folder in TOY_PANOPTIC_SPLITS.items():
        paths = {
            "image_root": functools.partial(toy_path, "images", folder),
            "panoptic_root": functools.partial(toy_path, f"ade20k_panoptic_{split}"),
            "panoptic_json": functools.partial(toy_path, f"ade20k_panoptic_{split}.json"),
            "sem_seg_root": functools.partial(toy_path, "annotations", folder),
            "json_file": functools.partial(toy_path, f"ade20k_instance_{split}.json"),
        }
        register_panoptic_split(
            f"toy_panoptic_{split}", functools.partial(_load, split), categories, paths, "coco_panoptic_seg"
        )
        register_instance_split(
            f"toy_instance_{split}", paths["json_file"], paths["image_root"], categories, "coco", _GENERATE
        )
