"""FreeMask's synthetic splits in FreeSeg's seen-class ("base") vocabulary, so they join stage 2 through
``DATASETS.TRAIN_SYN`` next to a ``*_base`` training split.

Why a second set of splits: the released synthetic masks label every class of the full vocabulary (ADE20K 150,
COCO-Stuff 171, the toy 6), while FreeSeg trains on the seen classes only (135 / 156 / 4, re-indexed 0..S-1:
bytedance/FreeSeg, mask2former/data/datasets/register_ade20k_all_data.py and register_coco_full.py, the ``_base``
splits). ``datasets/prepare_synthetic_open_vocab.py`` writes, next to each mask folder of a synthetic
root, its seen-class twin (``annotations/`` -> ``annotations_base/``, ``annotations_filtered/`` ->
``annotations_filtered_base/``): unseen pixels 255, so no unseen label reaches training — the same rule as the
real ``_base`` maps. The splits ``<synthetic split>_base`` read those folders and carry the metadata of the real
base split (``OpenVocabSplit.metadata("base")``), which ``OpenVocabulary``'s ``training_vocabulary`` requires.

The resampled kind reads the same ``resampled_manifest.txt`` as its full-vocabulary twin and takes each listed mask
from the ``*_base`` twin of its folder, so one manifest serves both vocabularies.
"""

import functools
import os
from dataclasses import dataclass
from typing import Dict, List, Mapping, Set

from ...commands import hint
from ..catalog import DatasetCatalog, MetadataCatalog, datasets_root
from ..errors import DatasetError
from ..loading.listing_cache import list_files
from . import ade20k, coco_stuff, toy
from .open_vocab import open_vocab_split
from .synthetic import FILTERED_MASKS_DIR, IMAGES_DIR, MANIFEST_NAME, MASKS_DIR, load_resampled, load_synthetic

PREPARE = hint("prepare", "synthetic-open-vocab")
# Mask folder of a synthetic root -> its seen-class twin (written by PREPARE).
BASE_MASK_DIRS = {MASKS_DIR: "annotations_base", FILTERED_MASKS_DIR: "annotations_filtered_base"}
BASE_SUFFIX = "_base"


@dataclass(frozen=True)
class SyntheticVocabRoot:
    """One synthetic root and what its seen-class splits need.

    Attributes:
        folder: the root, relative to ``$DETECTRON2_DATASETS``.
        vocabulary: the ``open_vocab_split`` name whose seen classes the twins keep.
        reduce_zero_label: how the release masks store labels (True: 0 = unlabeled, class k as k + 1).
        names: kind (all | filtered | resampled) -> the full-vocabulary split; its twin adds ``_base``.
        real_dataset: the real base split of the same vocabulary (the TRAIN of FreeSeg's configs).
        download: how to obtain the root.
    """

    folder: str
    vocabulary: str
    reduce_zero_label: bool
    names: Mapping[str, str]
    real_dataset: str
    download: str

    def root(self) -> str:
        return os.path.join(datasets_root(), self.folder)

    def base_names(self) -> Dict[str, str]:
        return {kind: name + BASE_SUFFIX for kind, name in self.names.items()}


_RELEASE = "download {} from the FreeMask release and unzip it under $DETECTRON2_DATASETS (see datasets/README.md)"
# The synthetic COCO masks are COCO-Stuff's 171 classes, the vocabulary of coco_2017_train_full_task_base too.
SYNTHETIC_VOCAB_ROOTS: Dict[str, SyntheticVocabRoot] = {
    "ade20k_150": SyntheticVocabRoot(
        ade20k.SYN_DIR, "ade20k_150", True, ade20k.ADE20K_SYN_SPLITS, "ade20k_all_train_base",
        _RELEASE.format("ADE20K-Synthetic"),
    ),
    "coco_stuff_171": SyntheticVocabRoot(
        coco_stuff.SYN_DIR, "coco_stuff_171", False, coco_stuff.COCO_STUFF_SYN_SPLITS,
        "coco_2017_train_full_task_base", _RELEASE.format("COCO-Synthetic"),
    ),
    "toy_6": SyntheticVocabRoot(
        os.path.join("toy", toy.SYN_DIR), "toy_6", True, toy.TOY_SYN_SPLITS, "toy_ov_train_base",
        f"generate it with {hint('make-toy')}",
    ),
}  # fmt: skip


def _prepare_hint(root: str, source: str) -> str:
    if source == FILTERED_MASKS_DIR and not os.path.isdir(os.path.join(root, source)):
        return f"write {os.path.join(root, source)} with {hint('filter')}, then run {PREPARE}"
    return f"run {PREPARE} (see datasets/README.md, FreeSeg section)"


def _check_prepared(root: str, source: str, download: str) -> str:
    """The seen-class twin of ``<root>/<source>``; one DatasetError line naming what to run when it is missing."""
    images = os.path.join(root, IMAGES_DIR)
    if not os.path.isdir(images):
        raise DatasetError(f"synthetic images folder not found: {images}; {download}")
    prepared = os.path.join(root, BASE_MASK_DIRS[source])
    if not os.path.isdir(prepared):
        raise DatasetError(f"seen-class synthetic masks not found: {prepared}; {_prepare_hint(root, source)}")
    return prepared


def load_synthetic_base(entry: SyntheticVocabRoot, kind: str) -> List[dict]:
    """Records of the seen-class twin of ``entry``'s split ``kind`` (prepared masks: 0..S-1, 255 ignore)."""
    root = entry.root()
    if kind == "resampled":
        return _load_resampled_base(root, entry.download)
    source = FILTERED_MASKS_DIR if kind == "filtered" else MASKS_DIR
    prepared = _check_prepared(root, source, entry.download)
    try:
        return load_synthetic(root, os.path.basename(prepared), False, missing_hint=entry.download)
    except DatasetError as e:  # typically an interrupted preparation
        raise DatasetError(f"{e}; or finish the preparation with {PREPARE}") from None


def _load_resampled_base(root: str, download: str) -> List[dict]:
    """The manifest's pairs with each mask ``<folder>/<name>`` read from ``<folder's twin>/<name>``."""
    records = load_resampled(root, reduce_zero_label=False)
    listings: Dict[str, Set[str]] = {}
    for record in records:
        folder, name = os.path.split(record["sem_seg_file_name"])
        parent, sub = os.path.split(folder)
        if sub not in BASE_MASK_DIRS:
            raise DatasetError(
                f"{os.path.join(root, MANIFEST_NAME)}: mask {record['sem_seg_file_name']} is not in an "
                f"{' or '.join(BASE_MASK_DIRS)} folder, so it has no seen-class twin; re-run {hint('resample')} "
                f"on a synthetic split of {root}"
            )
        twin = os.path.join(parent, BASE_MASK_DIRS[sub])
        if twin not in listings:
            listings[twin] = set(list_files(_check_prepared(parent, sub, download)))
        if name not in listings[twin]:
            raise DatasetError(
                f"{os.path.join(twin, name)} not found (the twin of {record['sem_seg_file_name']}, listed in the "
                f"resampled manifest); finish the preparation with {PREPARE}"
            )
        record["sem_seg_file_name"] = os.path.join(twin, name)
    return records


def register_synthetic_open_vocab() -> None:
    """Register ``<synthetic split>_base`` for every kind of every synthetic root (no disk access); names already
    registered are left as they are."""
    for entry in SYNTHETIC_VOCAB_ROOTS.values():
        meta = open_vocab_split(entry.vocabulary).metadata("base")
        for kind, name in entry.base_names().items():
            if name in DatasetCatalog:
                continue
            DatasetCatalog.register(name, functools.partial(load_synthetic_base, entry, kind))
            # real_dataset: tools/check_dataset.py looks for the real mask of each pair there, as for the full twins.
            MetadataCatalog.get(name).set(evaluator_type="sem_seg", real_dataset=entry.real_dataset, **meta)
