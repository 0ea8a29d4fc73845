"""The open-vocabulary preparation of each dataset family: which folders go through the generic steps of
``open_vocab.py`` (the tree each writes is in datasets/README.md, FreeSeg section).

- PASCAL VOC: ``SegmentationClassAug`` of the names in ``VOC2012/{train,val}.txt`` -> ``annotations_detectron2/
  {train,val}[_base|_novel]`` (background 0 and boundaries 255 -> 255, class k + 1 -> k, then the split).
- COCO-Stuff-164K: the prepared full maps (``prepare_coco_stuff``, run first) -> ``{train,val}2017_{base,novel}``.
- ADE20K-layout trees (ADE20K, the toy): raw ``annotations/`` -> ``annotations_detectron2/<folder>[_base|_novel]``;
  Mask2Former's panoptic and instance files -> their ``_base`` / ``_novel`` versions.

Each also writes the label counts of every semantic folder. Functions take ``(root, workers, force, progress)``
like the other ``prepare_*`` functions, so ``datasets/prepare_*.py`` only name them.
"""

import os
from typing import List, Sequence

import numpy as np

from ...commands import hint
from ..datasets.open_vocab import KINDS, OpenVocabSplit, kind_suffix, open_vocab_split
from ..datasets.open_vocab_register import ade_layout_paths
from ..datasets.panoptic import ADE_LAYOUT_SPLITS
from ..errors import DatasetError
from .open_vocab import (
    contiguous_source,
    split_instances,
    split_panoptic,
    split_semantic_maps,
    write_label_counts,
    zero_reduced_source,
)
from .panoptic import prepare_ade20k_panoptic
from .sem_seg import COCO_STUFF_SPLITS, PrepareResult, folder_pairs, prepare_coco_stuff

SPLIT_KINDS = ("base", "novel")
VOC_FOLDERS = ("train", "val")


def semantic_with_counts(
    sources: Sequence[str],
    out_dirs: dict,
    all_dir: str,
    split: OpenVocabSplit,
    source: np.ndarray,
    workers: int,
    force: bool,
    progress: bool,
    desc: str,
) -> PrepareResult:
    """Re-labelled maps for ``out_dirs`` (kind -> folder), then the label counts of ``all_dir`` and of the split
    folders; the counts wait for a clean conversion (a missing map would drop its image from stage 1)."""
    result = split_semantic_maps(sources, out_dirs, split, source, workers, force, progress, desc)
    if not result.errors:
        derived = {k: out_dirs[k] for k in SPLIT_KINDS}
        result.add(write_label_counts(all_dir, split, derived, workers, force, progress))
    return result


# ------------------------------------------------------------------------------------------------------------ VOC
def _read_names(path: str) -> List[str]:
    if not os.path.isfile(path):
        raise DatasetError(
            f"VOC image list not found: {path}; put there the SegmentationClassAug list of the split (train: the "
            "10,582 'trainaug' names, val: ImageSets/Segmentation/val.txt), one name per line (see datasets/README.md)"
        )
    with open(path, encoding="utf-8") as f:
        return [line.split()[0] for line in f if line.strip()]


def prepare_voc(root: str, workers: int = 0, force: bool = False, progress: bool = True) -> PrepareResult:
    """``<root>/VOC2012/SegmentationClassAug`` of ``{train,val}.txt`` -> ``annotations_detectron2/{train,val}
    [_base|_novel]`` and their label counts (FreeSeg's ``prepare_voc_sem_seg.py`` + ``mask_cls_collect.py``)."""
    base = os.path.join(root, "VOC2012")
    split = open_vocab_split("voc_20")
    jobs = []
    for folder in VOC_FOLDERS:  # every list and mask checked before any work
        sources = [os.path.join(base, "SegmentationClassAug", f"{n}.png") for n in _read_names(f"{base}/{folder}.txt")]
        missing = [s for s in sources if not os.path.isfile(s)]
        if missing:
            raise DatasetError(
                f"{len(missing)} masks of {base}/{folder}.txt are missing (first: {missing[0]}); unzip "
                f"SegmentationClassAug.zip into {base}"
            )
        jobs.append((folder, sources))
    result = PrepareResult()
    source = zero_reduced_source(len(split.categories.ids))
    for folder, sources in jobs:
        out = {kind: os.path.join(base, "annotations_detectron2", folder + kind_suffix(kind)) for kind in KINDS}
        desc = f"VOC {folder}"
        result.add(semantic_with_counts(sources, out, out["all"], split, source, workers, force, progress, desc))
    return result


# ---------------------------------------------------------------------------------------------- COCO-Stuff-164K
def prepare_coco_stuff_open_vocab(
    root: str, workers: int = 0, force: bool = False, progress: bool = True
) -> PrepareResult:
    """The full COCO-Stuff maps (``prepare_coco_stuff``, skipped where done), then ``stuffthingmaps_detectron2/
    {train,val}2017_{base,novel}`` and the label counts of the three folders of each split."""
    result = prepare_coco_stuff(root, workers, force, progress)
    if result.errors:
        return result
    base = os.path.join(root, "coco", "stuffthingmaps_detectron2")
    split = open_vocab_split("coco_stuff_171")
    source = contiguous_source(len(split.categories.ids))
    for folder in COCO_STUFF_SPLITS:
        all_dir = os.path.join(base, folder)
        sources = [src for src, _ in folder_pairs(all_dir, all_dir)]
        out = {kind: os.path.join(base, folder + kind_suffix(kind)) for kind in SPLIT_KINDS}
        desc = f"COCO-Stuff {folder}"
        result.add(semantic_with_counts(sources, out, all_dir, split, source, workers, force, progress, desc))
    return result


# ----------------------------------------------------------------------------------------------- ADE20K layout
def prepare_ade_layout_open_vocab(
    base: str,
    split: OpenVocabSplit,
    workers: int = 0,
    force: bool = False,
    progress: bool = True,
    hint: str = "see datasets/README.md",
) -> PrepareResult:
    """Every ``_base`` / ``_novel`` file of an ADE-layout tree ``base`` (raw ``annotations/`` with 0 = unlabeled,
    Mask2Former's ``ade20k_panoptic_*`` and ``ade20k_instance_*.json``), and the full ``annotations_detectron2/``
    maps when missing. ``hint`` names the command that writes the panoptic and instance inputs."""
    layouts = []
    for short, folder in ADE_LAYOUT_SPLITS.items():
        paths = {k: {p: os.path.join(base, *parts) for p, parts in ade_layout_paths(short, folder, k).items()}
                 for k in KINDS}  # fmt: skip
        for path in (paths["all"]["panoptic_json"], paths["all"]["json_file"]):
            if not os.path.isfile(path):
                raise DatasetError(f"{path} not found; {hint}")
        layouts.append((folder, paths, folder_pairs(os.path.join(base, "annotations", folder), base)))
    result = PrepareResult()
    source = zero_reduced_source(len(split.categories.ids))
    for folder, paths, pairs in layouts:
        sem = {kind: paths[kind]["sem_seg_root"] for kind in KINDS}
        sources = [src for src, _ in pairs]
        desc = f"{split.name} {folder}"
        step = semantic_with_counts(sources, sem, sem["all"], split, source, workers, force, progress, desc)
        result.add(step)
        if step.errors:
            continue
        pan = {k: (paths[k]["panoptic_json"], paths[k]["panoptic_root"]) for k in SPLIT_KINDS}
        full = paths["all"]
        json_in, png_root = full["panoptic_json"], full["panoptic_root"]
        result.add(split_panoptic(json_in, png_root, pan, split, workers, force, progress, hint))
        instances = {k: paths[k]["json_file"] for k in SPLIT_KINDS}
        result.add(split_instances(full["json_file"], instances, split, force, hint))
    return result


def prepare_ade20k_open_vocab(root: str, workers: int = 0, force: bool = False, progress: bool = True) -> PrepareResult:
    """Mask2Former's ADE20K panoptic / instance files (``prepare_ade20k_panoptic``, skipped where done), then the
    open-vocabulary files of ``<root>/ADEChallengeData2016``."""
    result = prepare_ade20k_panoptic(root, workers, force, progress)
    if result.errors:
        return result
    base = os.path.join(root, "ADEChallengeData2016")
    first = f"run {hint('prepare', 'ade20k-panoptic')} first (see datasets/README.md)"
    result.add(prepare_ade_layout_open_vocab(base, open_vocab_split("ade20k_150"), workers, force, progress, first))
    return result
