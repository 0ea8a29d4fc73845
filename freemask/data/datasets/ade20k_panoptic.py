"""ADE20K-150 panoptic (100 things, 50 stuff) and instance (100 things) splits, under Mask2Former's names.

``ADEChallengeData2016/ade20k_panoptic_{train,val}/`` + ``.json`` and ``ade20k_instance_{train,val}.json`` are
written by ``datasets/prepare_ade20k_panoptic.py`` from the SceneParsing annotations and the instance annotations
(``annotations_instance/``); the semantic maps are ``annotations_detectron2/`` (``prepare_ade20k_sem_seg.py``).
Category ids are the 0-based SceneParsing ids (0 = wall ... 149 = flag), as Mask2Former writes them; which of them
are things comes from ``meta/ade20k_instance_100.json`` (the instance-class table), names and colours from
``meta/ade20k_150.json``.
"""

import os
from typing import Dict

from ...commands import hint
from ..catalog import datasets_root
from .ade20k import ADE_DIR, ade20k_meta
from .class_meta import read_meta_file
from .panoptic import PanopticCategories, register_ade_layout_splits

_HINT = (
    f"write the panoptic and instance files with {hint('prepare', 'ade20k-panoptic')} (it needs "
    "ADEChallengeData2016/annotations_instance/, see datasets/README.md)"
)


def ade20k_instance_to_ade150() -> Dict[int, int]:
    """ADE20K instance class (1..100) -> 0-based SceneParsing id of the same class."""
    pairs = read_meta_file("ade20k_instance_100.json")["instance_to_ade150"]
    return {int(ins): int(sem) - 1 for ins, sem in pairs}


def ade20k_panoptic_categories() -> PanopticCategories:
    """The 150 ADE20K categories (ids 0..149) with Mask2Former's thing/stuff split."""
    names, colors = ade20k_meta()
    things = set(ade20k_instance_to_ade150().values())
    if len(things) != 100:
        raise ValueError("meta/ade20k_instance_100.json must map 100 instance classes to 100 ADE ids; reinstall")
    return PanopticCategories(tuple(range(150)), names, tuple(i in things for i in range(150)), colors)


def ade_path(*parts: str) -> str:
    """``$DETECTRON2_DATASETS/ADEChallengeData2016/<parts>``, read at each call."""
    return os.path.join(datasets_root(), ADE_DIR, *parts)


def register_ade20k_panoptic() -> None:
    """Register ``ade20k_panoptic_{train,val}`` and ``ade20k_instance_{train,val}`` (no disk access)."""
    register_ade_layout_splits(
        "ade20k", ade_path, ade20k_panoptic_categories(), "annotations_detectron2", "ade20k_panoptic_seg", _HINT
    )
