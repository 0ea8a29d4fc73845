"""ADE20K (SceneParsing, 150 classes) and ADE20K-Synthetic, registered under detectron2's names.

The real splits read ``annotations_detectron2/`` (0..149, 255 ignore) when ``datasets/prepare_ade20k_sem_seg.py``
has written it, else the raw ``annotations/`` (0 = unlabeled, 1..150) with ``reduce_zero_label``: both give the
same training labels, so preparing is an optimisation, not a requirement. The root is read from
``$DETECTRON2_DATASETS`` when a split is loaded; class names and colours come from ``meta/ade20k_150.json``.
"""

import os
from typing import List, Optional, Tuple

from ...commands import hint
from ..catalog import datasets_root
from ..errors import DatasetError
from .class_meta import class_meta
from .sem_seg import load_sem_seg, register_lazy_splits
from .synthetic import register_synthetic_splits

ADE_DIR = "ADEChallengeData2016"
SYN_DIR = "ADE20K_Synthetic"
NUM_CLASSES = 150
# dataset name -> split folder
ADE20K_SPLITS = {"ade20k_sem_seg_train": "training", "ade20k_sem_seg_val": "validation"}
ADE20K_SYN_SPLITS = {
    "all": "ade20k_syn_sem_seg_train",
    "filtered": "ade20k_syn_filtered_sem_seg_train",
    "resampled": "ade20k_syn_resampled_sem_seg_train",
}
_DOWNLOAD = (
    "download ADEChallengeData2016.zip (MIT Scene Parsing benchmark) and unzip it under $DETECTRON2_DATASETS "
    "(see datasets/README.md)"
)


def ade20k_meta() -> Tuple[Tuple[str, ...], Tuple[Tuple[int, int, int], ...]]:
    """(150 class names, 150 RGB colours) in label order (MMSegmentation's palette)."""
    return class_meta("ade20k_150.json", NUM_CLASSES)


def load_ade20k(split: str, root: Optional[str] = None) -> List[dict]:
    """Records of ``ADEChallengeData2016/images/<split>`` (training | validation) under ``root`` (default
    ``$DETECTRON2_DATASETS``), with prepared masks when their folder exists, raw masks otherwise."""
    base = os.path.join(root if root is not None else datasets_root(), ADE_DIR)
    images = os.path.join(base, "images", split)
    prepared = os.path.join(base, "annotations_detectron2", split)
    raw = os.path.join(base, "annotations", split)
    if not os.path.isdir(images):
        raise DatasetError(f"ADE20K images not found: {images} does not exist; {_DOWNLOAD}")
    if os.path.isdir(prepared):
        try:
            return load_sem_seg(images, prepared, ".jpg", ".png", reduce_zero_label=False)
        except DatasetError as e:  # typically an interrupted preparation
            raise DatasetError(
                f"{e}; or finish the preparation with {hint('prepare', 'ade20k-sem-seg')}, or delete "
                f"{prepared} to use the raw masks"
            ) from None
    if not os.path.isdir(raw):
        raise DatasetError(f"ADE20K masks not found: neither {prepared} nor {raw} exists; {_DOWNLOAD}")
    return load_sem_seg(images, raw, ".jpg", ".png", reduce_zero_label=True)


def _synthetic_root() -> str:
    return os.path.join(datasets_root(), SYN_DIR)


def register_ade20k() -> None:
    """Register the real and synthetic ADE20K splits (no dataset folder is read); names already registered are
    left as they are."""
    register_lazy_splits(ADE20K_SPLITS, load_ade20k, *ade20k_meta())
    register_synthetic_splits(
        ADE20K_SYN_SPLITS,
        _synthetic_root,
        real_dataset="ade20k_sem_seg_train",
        reduce_zero_label=True,
        missing_hint=(
            "download ADE20K-Synthetic from the FreeMask release and unzip it under $DETECTRON2_DATASETS "
            "(see datasets/README.md)"
        ),
    )
