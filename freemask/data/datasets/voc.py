"""PASCAL VOC 2012 (20 classes, SegmentationClassAug) with FreeSeg's seen/unseen splits (15 / 5), under its names.

``datasets/prepare_voc_sem_seg.py`` writes ``VOC2012/annotations_detectron2/{train,val}[_base|_novel]/`` (background
and boundaries 255, classes 0..19, or re-indexed to the split) and their label counts; images are read from
``JPEGImages/``, which holds more images than either split, so records follow the masks. Registered as
bytedance/FreeSeg's mask2former/data/datasets/register_voc_seg.py names them: ``voc_sem_seg_{train,test}`` (all
20, with ``trainable_flag``), ``voc_base_sem_seg_*`` (15), ``voc_novel_sem_seg_*`` (5), each with its
``_classification`` twin for stage 1.
"""

import functools
import os
from typing import List

from ...commands import hint
from ..catalog import datasets_root
from .open_vocab import KINDS, kind_suffix, open_vocab_split
from .open_vocab_register import load_prepared_sem_seg, register_open_vocab_split

VOC_DIR = "VOC2012"
VOC_SPLITS = {"train": "train", "test": "val"}  # registered name -> annotation folder
_HINT = (
    "download VOC2012 (JPEGImages, SegmentationClassAug) under $DETECTRON2_DATASETS and run "
    f"{hint('prepare', 'voc-sem-seg')} (see datasets/README.md, FreeSeg section)"
)


def voc_path(*parts: str) -> str:
    """``$DETECTRON2_DATASETS/VOC2012/<parts>``, read at each call."""
    return os.path.join(datasets_root(), VOC_DIR, *parts)


def voc_name(split: str, kind: str) -> str:
    """FreeSeg's dataset names: voc_sem_seg_train, voc_base_sem_seg_test, ..."""
    return f"voc{kind_suffix(kind)}_sem_seg_{split}"


def _load(folder: str) -> List[dict]:
    return load_prepared_sem_seg(voc_path("JPEGImages"), voc_path("annotations_detectron2", folder), _HINT)


def register_voc() -> None:
    """Register the VOC splits and their stage-1 twins (no disk access)."""
    split = open_vocab_split("voc_20")
    for name, folder in VOC_SPLITS.items():
        for kind in KINDS:
            sub = folder + kind_suffix(kind)
            paths = {
                "image_root": functools.partial(voc_path, "JPEGImages"),
                "sem_seg_root": functools.partial(voc_path, "annotations_detectron2", sub),
            }
            load = functools.partial(_load, sub)
            register_open_vocab_split(voc_name(name, kind), kind, split, load, paths, "sem_seg", _HINT)
