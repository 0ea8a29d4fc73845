"""Panoptic and instance splits of the toy dataset (``tools/make_toy_dataset.py``), registered like ADE20K's.

``toy_panoptic_{train,val}`` read ``toy/ADEChallengeData2016/ade20k_panoptic_{train,val}[.json]`` with the raw toy
semantic masks (``reduce_zero_label``); ``toy_instance_{train,val}`` read ``ade20k_instance_{train,val}.json``.
Category ids are the raw toy labels 1..6; car and person are things.
"""

import os

from ...commands import hint
from .panoptic import PanopticCategories, register_ade_layout_splits
from .toy import REAL_DIR, TOY_CLASSES, TOY_COLORS, toy_root

THINGS = ("car", "person")
_GENERATE = f"generate it with {hint('make-toy')}; it writes the panoptic files too"


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


def register_toy_panoptic() -> None:
    """Register ``toy_panoptic_{train,val}`` and ``toy_instance_{train,val}`` (no disk access)."""
    register_ade_layout_splits(
        "toy", toy_path, toy_panoptic_categories(), "annotations", "coco_panoptic_seg", _GENERATE,
        reduce_zero_label=True,
    )  # fmt: skip
