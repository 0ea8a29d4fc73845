"""The embedded toy dataset (``tools/make_toy_dataset.py``): 6 classes in the ADE20K on-disk layout.

Raw masks follow the ADE20K convention (0 = unlabeled, class k stored as k + 1), so the toy runs exercise the same
zero-label reduction as ADE20K. The dataset root is read from ``$DETECTRON2_DATASETS`` when a loader runs, not
when the datasets are registered, so a test or a user can point it elsewhere after import.
"""

import os
from typing import Callable, List

from ..catalog import DatasetCatalog
from ..errors import DatasetError
from .sem_seg import load_sem_seg, set_sem_seg_metadata

TOY_CLASSES = ("sky", "grass", "road", "building", "car", "person")
# Cityscapes colours of the same classes.
TOY_COLORS = ([70, 130, 180], [107, 142, 35], [128, 64, 128], [70, 70, 70], [0, 0, 142], [220, 20, 60])

REAL_DIR = "ADEChallengeData2016"
SYN_DIR = "ADE20K_Synthetic"

# name -> (images folder, masks folder), relative to toy_root()
TOY_SPLITS = {
    "toy_sem_seg_train": (f"{REAL_DIR}/images/training", f"{REAL_DIR}/annotations/training"),
    "toy_sem_seg_val": (f"{REAL_DIR}/images/validation", f"{REAL_DIR}/annotations/validation"),
    "toy_syn_sem_seg_train": (f"{SYN_DIR}/images", f"{SYN_DIR}/annotations"),
}


def toy_root() -> str:
    """``$DETECTRON2_DATASETS/toy`` (``./datasets/toy`` when the variable is unset)."""
    return os.path.join(os.environ.get("DETECTRON2_DATASETS", "datasets"), "toy")


def _toy_loader(images: str, masks: str) -> Callable[[], List[dict]]:
    def load() -> List[dict]:
        root = toy_root()
        image_root, mask_root = os.path.join(root, images), os.path.join(root, masks)
        if not os.path.isdir(image_root):
            raise DatasetError(
                f"toy dataset not found: {image_root} does not exist; generate it with `python tools/make_toy_dataset.py`"
                " (it writes to $DETECTRON2_DATASETS/toy, default ./datasets/toy)"
            )
        return load_sem_seg(image_root, mask_root, ".jpg", ".png", reduce_zero_label=True)

    return load


def register_toy() -> None:
    """Register the toy splits (no disk access); names already registered are left as they are."""
    for name, (images, masks) in TOY_SPLITS.items():
        if name in DatasetCatalog:
            continue
        DatasetCatalog.register(name, _toy_loader(images, masks))
        set_sem_seg_metadata(name, TOY_CLASSES, TOY_COLORS, ignore_label=255)
