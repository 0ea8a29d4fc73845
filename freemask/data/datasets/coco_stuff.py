"""COCO-Stuff-164K (171 classes) and COCO-Synthetic, registered under detectron2's names.

Unlike ADE20K the raw ``stuffthingmaps_trainval2017`` store COCO ids minus one with 11 unused ids, so they cannot
be read directly: ``datasets/prepare_coco_stuff_164k_sem_seg.py`` writes ``stuffthingmaps_detectron2`` (0..170,
255 ignore) once, and a missing prepared folder names that script. Class names, colours (MMSegmentation's palette)
and the 171 used COCO ids come from ``meta/coco_stuff_171.json``.
"""

import os
from typing import List, Optional, Tuple

from ...commands import hint
from ..catalog import datasets_root
from ..errors import DatasetError
from .class_meta import class_meta
from .sem_seg import load_sem_seg, register_lazy_splits
from .synthetic import register_synthetic_splits

COCO_DIR = "coco"
SYN_DIR = "COCO_Synthetic"
PREPARED_DIR = "stuffthingmaps_detectron2"
RAW_DIR = "stuffthingmaps_trainval2017"
NUM_CLASSES = 171
# dataset name -> split folder
COCO_STUFF_SPLITS = {"coco_2017_train_stuff_sem_seg": "train2017", "coco_2017_val_stuff_sem_seg": "val2017"}
COCO_STUFF_SYN_SPLITS = {
    "all": "coco_2017_syn_stuff_sem_seg_train",
    "filtered": "coco_2017_syn_filtered_stuff_sem_seg_train",
    "resampled": "coco_2017_syn_resampled_stuff_sem_seg_train",
}
_PREPARE = hint("prepare", "coco-stuff-164k-sem-seg")


def coco_stuff_meta() -> Tuple[Tuple[str, ...], Tuple[Tuple[int, int, int], ...]]:
    """(171 class names, 171 RGB colours) in label order: 80 things then 91 stuff classes, by COCO id."""
    return class_meta("coco_stuff_171.json", NUM_CLASSES)


def load_coco_stuff(split: str, root: Optional[str] = None) -> List[dict]:
    """Records of ``coco/<split>`` (train2017 | val2017) under ``root`` (default ``$DETECTRON2_DATASETS``) with
    their prepared masks."""
    base = os.path.join(root if root is not None else datasets_root(), COCO_DIR)
    images = os.path.join(base, split)
    masks = os.path.join(base, PREPARED_DIR, split)
    raw = os.path.join(base, RAW_DIR, split)
    if not os.path.isdir(images):
        raise DatasetError(
            f"COCO images not found: {images} does not exist; download {split}.zip from cocodataset.org and unzip it "
            f"under {base} (see datasets/README.md)"
        )
    if not os.path.isdir(masks):
        if os.path.isdir(raw):
            raise DatasetError(
                f"COCO-Stuff masks not prepared: {masks} does not exist; run {_PREPARE} to convert {raw}"
            )
        raise DatasetError(
            f"COCO-Stuff masks not found: neither {masks} nor {raw} exists; download stuffthingmaps_trainval2017.zip "
            f"(COCO-Stuff 164K), unzip it under {base}, then run {_PREPARE}"
        )
    try:
        return load_sem_seg(images, masks, ".jpg", ".png", reduce_zero_label=False)
    except DatasetError as e:  # typically an interrupted preparation
        raise DatasetError(f"{e}; or finish the preparation with {_PREPARE}") from None


def _synthetic_root() -> str:
    return os.path.join(datasets_root(), SYN_DIR)


def register_coco_stuff() -> None:
    """Register the real and synthetic COCO-Stuff splits (no dataset folder is read); names already registered are
    left as they are."""
    register_lazy_splits(COCO_STUFF_SPLITS, load_coco_stuff, *coco_stuff_meta())
    register_synthetic_splits(
        COCO_STUFF_SYN_SPLITS,
        _synthetic_root,
        real_dataset="coco_2017_train_stuff_sem_seg",
        reduce_zero_label=False,
        missing_hint=(
            "download COCO-Synthetic from the FreeMask release and unzip it under $DETECTRON2_DATASETS "
            "(see datasets/README.md)"
        ),
    )
