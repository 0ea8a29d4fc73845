"""Cityscapes (19 evaluated classes, fine annotations), registered under detectron2's names.

Images are ``cityscapes/leftImg8bit/<split>/<city>/<name>_leftImg8bit.png`` and labels the train-id maps
``cityscapes/gtFine/<split>/<city>/<name>_gtFine_labelTrainIds.png`` (0..18, 255 ignore) that
``datasets/prepare_cityscapes_sem_seg.py`` (or cityscapesScripts' ``createTrainIdLabelImgs``) writes from the raw
``*_gtFine_labelIds.png``. The root is read from ``$DETECTRON2_DATASETS`` when a split is loaded; class names, colours
and the label-id table come from ``meta/cityscapes_19.json``.
"""

import os
from typing import List, Optional, Tuple

from ...commands import hint
from ..catalog import datasets_root
from ..errors import DatasetError
from .class_meta import class_meta
from .sem_seg import register_lazy_splits

CITYSCAPES_DIR = "cityscapes"
NUM_CLASSES = 19
# dataset name -> split folder
CITYSCAPES_SPLITS = {"cityscapes_fine_sem_seg_train": "train", "cityscapes_fine_sem_seg_val": "val"}
IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelTrainIds.png"
RAW_LABEL_SUFFIX = "_gtFine_labelIds.png"
_PREPARE = hint("prepare", "cityscapes-sem-seg")
_SHOWN = 3


def cityscapes_meta() -> Tuple[Tuple[str, ...], Tuple[Tuple[int, int, int], ...]]:
    """(19 class names, 19 RGB colours) in train-id order (cityscapesScripts' labels)."""
    return class_meta("cityscapes_19.json", NUM_CLASSES)


def load_cityscapes(split: str, root: Optional[str] = None) -> List[dict]:
    """Records of every ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` under ``root`` (default
    ``$DETECTRON2_DATASETS``)/cityscapes with its train-id label map, sorted by city and name."""
    base = os.path.join(root if root is not None else datasets_root(), CITYSCAPES_DIR)
    images, labels = os.path.join(base, "leftImg8bit", split), os.path.join(base, "gtFine", split)
    for folder, archive in ((images, "leftImg8bit_trainvaltest.zip"), (labels, "gtFine_trainvaltest.zip")):
        if not os.path.isdir(folder):
            raise DatasetError(
                f"Cityscapes folder not found: {folder} does not exist; download {archive} from cityscapes-dataset.com "
                f"and unzip it under {base} (see datasets/README.md)"
            )
    records, missing = [], []
    for city in sorted(os.listdir(images)):
        city_dir = os.path.join(images, city)
        if not os.path.isdir(city_dir):
            continue
        for name in sorted(n for n in os.listdir(city_dir) if n.endswith(IMAGE_SUFFIX)):
            stem = name[: -len(IMAGE_SUFFIX)]
            label = os.path.join(labels, city, stem + LABEL_SUFFIX)
            if not os.path.isfile(label):
                missing.append(label)
            records.append(
                {"file_name": os.path.join(city_dir, name), "sem_seg_file_name": label, "reduce_zero_label": False}
            )
    if not records:
        raise DatasetError(f"no '*{IMAGE_SUFFIX}' images in {images}/<city>/; the split is empty — check the path")
    if missing:
        shown = ", ".join(os.path.basename(m) for m in missing[:_SHOWN]) + (", ..." if len(missing) > _SHOWN else "")
        raw = missing[0][: -len(LABEL_SUFFIX)] + RAW_LABEL_SUFFIX
        fix = f"run {_PREPARE}" if os.path.isfile(raw) else f"unzip gtFine_trainvaltest.zip, then run {_PREPARE}"
        raise DatasetError(
            f"{len(missing)} of {len(records)} Cityscapes {split} label maps are missing ({shown}); {fix}"
        )
    return records


def register_cityscapes() -> None:
    """Register the train and val splits (no folder is read); names already registered are left as they are."""
    register_lazy_splits(CITYSCAPES_SPLITS, load_cityscapes, *cityscapes_meta())
