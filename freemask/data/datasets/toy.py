"""The embedded toy dataset (``tools/make_toy_dataset.py``): 6 classes in the ADE20K on-disk layout.

Raw masks follow the ADE20K convention (0 = unlabeled, class k stored as k + 1), so the toy runs exercise the same
zero-label reduction as ADE20K. The dataset root is read from ``$DETECTRON2_DATASETS`` when a loader runs, not
when the datasets are registered, so a test or a user can point it elsewhere after import.
"""

import os
from typing import Callable, List

from ...commands import hint
from ..catalog import DatasetCatalog, datasets_root
from ..errors import DatasetError
from .sem_seg import load_sem_seg, set_sem_seg_metadata
from .synthetic import register_synthetic_splits

TOY_CLASSES = ("sky", "grass", "road", "building", "car", "person")
# Cityscapes colours of the same classes.
TOY_COLORS = ([70, 130, 180], [107, 142, 35], [128, 64, 128], [70, 70, 70], [0, 0, 142], [220, 20, 60])

REAL_DIR = "ADEChallengeData2016"
SYN_DIR = "ADE20K_Synthetic"

# name -> (images folder, masks folder), relative to toy_root()
TOY_SPLITS = {
    "toy_sem_seg_train": (f"{REAL_DIR}/images/training", f"{REAL_DIR}/annotations/training"),
    "toy_sem_seg_val": (f"{REAL_DIR}/images/validation", f"{REAL_DIR}/annotations/validation"),
}
# Synthetic splits of toy_root()/ADE20K_Synthetic (kind -> name), as for the real ADE20K-Synthetic.
TOY_SYN_SPLITS = {
    "all": "toy_syn_sem_seg_train",
    "filtered": "toy_syn_filtered_sem_seg_train",
    "resampled": "toy_syn_resampled_sem_seg_train",
}
_GENERATE = (
    f"generate it with {hint('make-toy')}; it writes to $DETECTRON2_DATASETS/toy, default ./datasets/toy"
)


def toy_root() -> str:
    """``$DETECTRON2_DATASETS/toy`` (``./datasets/toy`` when the variable is unset)."""
    return os.path.join(datasets_root(), "toy")


def _toy_synthetic_root() -> str:
    return os.path.join(toy_root(), SYN_DIR)


def _toy_loader(images: str, masks: str) -> Callable[[], List[dict]]:
    def load() -> List[dict]:
        root = toy_root()
        image_root, mask_root = os.path.join(root, images), os.path.join(root, masks)
        if not os.path.isdir(image_root):
            raise DatasetError(f"toy dataset not found: {image_root} does not exist; {_GENERATE}")
        return load_sem_seg(image_root, mask_root, ".jpg", ".png", reduce_zero_label=True)

    return load


def register_toy() -> None:
    """Register the toy splits (no disk access); names already registered are left as they are."""
    for name, (images, masks) in TOY_SPLITS.items():
        if name in DatasetCatalog:
            continue
        DatasetCatalog.register(name, _toy_loader(images, masks))
        set_sem_seg_metadata(name, TOY_CLASSES, TOY_COLORS, ignore_label=255)
    register_synthetic_splits(
        TOY_SYN_SPLITS, _toy_synthetic_root, "toy_sem_seg_train", reduce_zero_label=True, missing_hint=_GENERATE
    )
