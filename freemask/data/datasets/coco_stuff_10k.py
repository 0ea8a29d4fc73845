"""COCO-Stuff-10k (171 classes; 9k train, 1k test images), registered as ``coco_stuff_10k_sem_seg_{train,test}``.

The official ``cocostuff-10k-v1.1.zip`` holds ``images/*.jpg``, ``annotations/*.mat`` (label map ``S``: 0 =
unlabeled, COCO-Stuff ids) and ``imageLists/{train,test}.txt``. ``datasets/prepare_coco_stuff_10k_sem_seg.py``
converts the .mat files once to ``annotations_detectron2/<split>/*.png`` (0..170, 255 ignore; the same 171 classes,
colours and ids as COCO-Stuff-164K, ``meta/coco_stuff_171.json``), and the splits are the image lists: no image is
copied.
"""

import os
from typing import List, Optional

from ...commands import hint
from ..catalog import datasets_root
from ..errors import DatasetError
from ..prepare.sem_seg import read_image_list
from .coco_stuff import coco_stuff_meta
from .sem_seg import register_lazy_splits

COCO_STUFF_10K_DIR = "coco_stuff_10k"
PREPARED_DIR = "annotations_detectron2"
# dataset name -> split (image list and prepared folder)
COCO_STUFF_10K_SPLITS = {"coco_stuff_10k_sem_seg_train": "train", "coco_stuff_10k_sem_seg_test": "test"}
_PREPARE = hint("prepare", "coco-stuff-10k-sem-seg")


def load_coco_stuff_10k(split: str, root: Optional[str] = None) -> List[dict]:
    """Records of the images of ``imageLists/<split>.txt`` under ``root`` (default ``$DETECTRON2_DATASETS``)/
    coco_stuff_10k, with their prepared label maps."""
    base = os.path.join(root if root is not None else datasets_root(), COCO_STUFF_10K_DIR)
    names = read_image_list(base, split)
    masks = os.path.join(base, PREPARED_DIR, split)
    if not os.path.isdir(masks):
        raise DatasetError(f"COCO-Stuff-10k labels not prepared: {masks} does not exist; run {_PREPARE}")
    records = [
        {
            "file_name": os.path.join(base, "images", f"{name}.jpg"),
            "sem_seg_file_name": os.path.join(masks, f"{name}.png"),
            "reduce_zero_label": False,
        }
        for name in names
    ]
    for key, fix in (("file_name", "re-extract cocostuff-10k-v1.1.zip"), ("sem_seg_file_name", f"run {_PREPARE}")):
        missing = [r[key] for r in records if not os.path.isfile(r[key])]
        if missing:
            raise DatasetError(
                f"{len(missing)} of {len(records)} COCO-Stuff-10k {split} files are missing (first: {missing[0]}); "
                f"{fix}"
            )
    return records


def register_coco_stuff_10k() -> None:
    """Register the train and test splits (no folder is read); names already registered are left as they are."""
    register_lazy_splits(COCO_STUFF_10K_SPLITS, load_coco_stuff_10k, *coco_stuff_meta())
