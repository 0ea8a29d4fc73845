"""The seen-class ("base") twins of FreeMask's synthetic masks, for FreeSeg's stage 2 (``*_base`` synthetic splits,
``datasets/synthetic_open_vocab.py``).

Each mask folder of a synthetic root (``annotations/``, and ``annotations_filtered/`` when ``tools/filter_syn.py``
has written it) goes through the same re-labelling as the real ``_base`` maps (``split_semantic_maps``): the seen
classes re-indexed 0..S-1, unseen and unlabeled pixels 255, every file written under its own name in
``annotations_base/`` / ``annotations_filtered_base/``. Writes are atomic and a re-run skips finished masks; a mask
whose source is newer than its twin (a re-run of ``filter_syn.py`` rewrites ``annotations_filtered/``) is redone.
The release folders are only read.
"""

import os
from typing import List, Tuple

from ..datasets.open_vocab import open_vocab_split
from ..datasets.synthetic import FILTERED_MASKS_DIR
from ..datasets.synthetic_open_vocab import BASE_MASK_DIRS, SYNTHETIC_VOCAB_ROOTS, SyntheticVocabRoot
from ..errors import DatasetError
from .open_vocab import contiguous_source, split_semantic_maps, zero_reduced_source
from .sem_seg import PrepareResult, folder_pairs


def _remove_outdated(pairs: List[Tuple[str, str]]) -> None:
    """Delete the twins older than their source, so the size-only resume check redoes them."""
    for src, dst in pairs:
        try:
            if os.stat(dst).st_mtime < os.stat(src).st_mtime:
                os.remove(dst)
        except FileNotFoundError:
            continue


def prepare_synthetic_root(
    syn_root: str, entry: SyntheticVocabRoot, workers: int = 0, force: bool = False, progress: bool = True
) -> PrepareResult:
    """The seen-class twin of every mask folder of ``syn_root`` (laid out as ``entry`` says)."""
    split = open_vocab_split(entry.vocabulary)
    num_classes = len(split.categories.ids)
    source = zero_reduced_source(num_classes) if entry.reduce_zero_label else contiguous_source(num_classes)
    result = PrepareResult()
    for masks, twin in BASE_MASK_DIRS.items():
        src_dir, out_dir = os.path.join(syn_root, masks), os.path.join(syn_root, twin)
        if masks == FILTERED_MASKS_DIR and not os.path.isdir(src_dir):
            continue  # not filtered (yet): filter_syn.py then a re-run writes the twin
        pairs = folder_pairs(src_dir, out_dir)
        if not force:
            _remove_outdated(pairs)
        sources = [src for src, _ in pairs]
        desc = f"{entry.folder} {masks}"
        result.add(split_semantic_maps(sources, {"base": out_dir}, split, source, workers, force, progress, desc))
    return result


def prepare_synthetic_open_vocab(
    root: str, workers: int = 0, force: bool = False, progress: bool = True
) -> PrepareResult:
    """Every synthetic root found under ``root`` (ADE20K_Synthetic, COCO_Synthetic, toy/ADE20K_Synthetic)."""
    found = [e for e in SYNTHETIC_VOCAB_ROOTS.values() if os.path.isdir(os.path.join(root, e.folder))]
    if not found:
        looked = ", ".join(os.path.join(root, e.folder) for e in SYNTHETIC_VOCAB_ROOTS.values())
        raise DatasetError(
            f"no synthetic root found (looked for {looked}); unzip a FreeMask synthetic release there or pass --root"
        )
    result = PrepareResult()
    for entry in found:
        result.add(prepare_synthetic_root(os.path.join(root, entry.folder), entry, workers, force, progress))
    return result
