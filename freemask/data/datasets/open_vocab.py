"""Seen/unseen class splits of the open-vocabulary datasets, and the metadata of their ``all`` / ``base`` / ``novel``
variants (FreeSeg's three-way split: bytedance/FreeSeg, mask2former/data/datasets/register_coco_full.py,
register_voc_seg.py, register_ade20k_all_data.py).

Why a class: the preparation scripts (label maps and panoptic files re-indexed to a split), the registrations
(metadata) and the toy generator all need the same three facts — the full vocabulary in contiguous order, which of
its classes are unseen, and how a full contiguous id maps into a split — so they are derived here once from
``meta/open_vocab_splits.json`` (the lists) and the vocabulary's own class table.

Kinds: ``all`` is the full vocabulary (test sets; they carry ``trainable_flag`` and ``evaluation_set``), ``base``
the seen classes re-indexed 0..S-1 in vocabulary order (training), ``novel`` the unseen ones re-indexed 0..U-1.

Two flags, because FreeSeg's COCO panoptic test set has two: ``trainable_flag`` (``unseen``) is what the model treats
as unseen (the CLIP ensemble's weights), ``evaluation_flag`` (``metric_unseen``, only where it differs) the split the
seen / unseen metrics report on (freemask/evaluation/seen_unseen.py).
"""

import functools
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from .ade20k_panoptic import ade20k_panoptic_categories
from .class_meta import read_meta_file
from .coco_panoptic import coco_panoptic_categories
from .panoptic import PanopticCategories
from .sem_seg import IGNORE_LABEL
from .toy_panoptic import toy_panoptic_categories

KINDS = ("all", "base", "novel")


def kind_suffix(kind: str) -> str:
    """The folder / dataset-name suffix of a kind: "" for all, "_base", "_novel" (FreeSeg's names)."""
    if kind not in KINDS:
        raise ValueError(f"split kind must be one of {KINDS}, got {kind!r}")
    return "" if kind == "all" else f"_{kind}"


@dataclass(frozen=True)
class OpenVocabSplit:
    """A vocabulary (``categories``, contiguous order) with the contiguous ids of its ``unseen`` classes, and of the
    classes its metrics call unseen (``metric_unseen``; None: the same)."""

    name: str
    categories: PanopticCategories
    unseen: Tuple[int, ...]
    metric_unseen: Optional[Tuple[int, ...]] = None

    def __post_init__(self) -> None:
        n = len(self.categories.ids)
        for what, ids in (("unseen", self.unseen), ("metric_unseen", self.metric_unseen or self.unseen)):
            if len(set(ids)) != len(ids) or not all(0 <= i < n for i in ids):
                raise ValueError(f"split {self.name}: {what} ids {ids} must be distinct ids in 0..{n - 1}")
            if not 0 < len(ids) < n:
                raise ValueError(f"split {self.name}: needs both seen and {what} classes, got {len(ids)} of {n}")

    @property
    def seen(self) -> Tuple[int, ...]:
        unseen = set(self.unseen)
        return tuple(i for i in range(len(self.categories.ids)) if i not in unseen)

    def members(self, kind: str) -> Tuple[int, ...]:
        """Full contiguous ids of a kind's classes, in vocabulary order (position = contiguous id in the kind)."""
        kind_suffix(kind)
        if kind == "all":
            return tuple(range(len(self.categories.ids)))
        return self.seen if kind == "base" else tuple(sorted(self.unseen))

    def categories_of(self, kind: str) -> PanopticCategories:
        """The kind's categories (dataset ids, names, thing flags, colours), re-indexed by position."""
        c, keep = self.categories, self.members(kind)
        return PanopticCategories(
            tuple(c.ids[i] for i in keep),
            tuple(c.names[i] for i in keep),
            tuple(c.isthing[i] for i in keep),
            tuple(c.colors[i] for i in keep),
        )

    def to_kind(self, kind: str) -> np.ndarray:
        """int64 (K,): full contiguous id -> the kind's contiguous id, IGNORE_LABEL for classes outside it."""
        table = np.full(len(self.categories.ids), IGNORE_LABEL, np.int64)
        keep = self.members(kind)
        table[list(keep)] = np.arange(len(keep))
        return table

    @property
    def trainable_flag(self) -> List[int]:
        """1 per seen class, 0 per unseen one, over the full vocabulary (FreeSeg's metadata key)."""
        unseen = set(self.unseen)
        return [0 if i in unseen else 1 for i in range(len(self.categories.ids))]

    @property
    def evaluation_flag(self) -> Optional[List[int]]:
        """1 per class the metrics count as seen, 0 per unseen one, where that differs from ``trainable_flag``."""
        if self.metric_unseen is None or set(self.metric_unseen) == set(self.unseen):
            return None
        unseen = set(self.metric_unseen)
        return [0 if i in unseen else 1 for i in range(len(self.categories.ids))]

    @property
    def evaluation_set(self) -> Dict[str, List[int]]:
        """FreeSeg's ``evaluation_set``: ``base`` (the seen ids) and, for a vocabulary with things and stuff,
        ``novel_thing`` / ``novel_stuff`` (the unseen ids of each kind; FreeSeg's COCO sets, and what its ADE sets
        meant to hold — its ADE lists index the wrong table: bytedance/FreeSeg,
        mask2former/data/datasets/register_ade20k_all_data.py, register_ade20k_all)."""
        out = {"base": list(self.seen)}
        isthing = self.categories.isthing
        if any(isthing) and not all(isthing):
            out["novel_thing"] = [i for i in sorted(self.unseen) if isthing[i]]
            out["novel_stuff"] = [i for i in sorted(self.unseen) if not isthing[i]]
        return out

    def metadata(self, kind: str) -> Dict[str, Any]:
        """The metadata every registered split of this kind carries (contract B of the FreeSeg port):
        ``stuff_classes`` (all names of the kind), ``thing_classes``, ``stuff_colors``, ``thing_colors``,
        ``*_dataset_id_to_contiguous_id``, ``ignore_label``; ``all`` adds ``trainable_flag``, ``evaluation_set``
        and, where the metrics use other flags, ``evaluation_flag``; ``novel`` a ``trainable_flag`` of zeros (every
        class unseen, for the CLIP ensemble)."""
        meta = self.categories_of(kind).panoptic_metadata()
        if kind == "all":
            meta.update(trainable_flag=self.trainable_flag, evaluation_set=self.evaluation_set)
            if self.evaluation_flag is not None:
                meta["evaluation_flag"] = self.evaluation_flag
        elif kind == "novel":
            meta["trainable_flag"] = [0] * len(self.unseen)
        return meta


# ------------------------------------------------------------------------------------------------ vocabularies
def coco_stuff_categories() -> PanopticCategories:
    """COCO-Stuff's 171 classes (80 things with COCO ids 1..90, 91 stuff 92..182), ``meta/coco_stuff_171.json``."""
    data = read_meta_file("coco_stuff_171.json")
    ids = tuple(int(i) for i in data["coco_ids"])
    return PanopticCategories(
        ids, tuple(data["classes"]), tuple(i <= 90 for i in ids), tuple(tuple(c) for c in data["colors"])
    )


def ade20k_freeseg_categories() -> PanopticCategories:
    """ADE20K's 150 classes under the names FreeSeg prompts CLIP with (``meta/ade20k_150_freeseg.json``), with the
    ids, thing flags and colours of the ADE20K panoptic tables (which FreeSeg's list shares)."""
    base = ade20k_panoptic_categories()
    names = tuple(read_meta_file("ade20k_150_freeseg.json")["classes"])
    if len(names) != len(base.ids) or len(set(names)) != len(names):
        raise ValueError("meta/ade20k_150_freeseg.json must list 150 distinct class names; reinstall freemask")
    return PanopticCategories(base.ids, names, base.isthing, base.colors)


def voc_categories() -> PanopticCategories:
    """PASCAL VOC's 20 object classes (dataset ids = stored labels 1..20, all things), ``meta/voc_20.json``."""
    data = read_meta_file("voc_20.json")
    names = tuple(data["classes"])
    return PanopticCategories(
        tuple(range(1, len(names) + 1)), names, (True,) * len(names), tuple(tuple(c) for c in data["colors"])
    )


VOCABULARIES: Dict[str, Callable[[], PanopticCategories]] = {
    "coco_stuff_171": coco_stuff_categories,
    "coco_panoptic_133": coco_panoptic_categories,
    "ade20k_150": ade20k_freeseg_categories,
    "voc_20": voc_categories,
    "toy_6": toy_panoptic_categories,
}


@functools.lru_cache(maxsize=None)
def open_vocab_split(name: str) -> OpenVocabSplit:
    """The split ``name`` of ``meta/open_vocab_splits.json`` (coco_stuff_171, coco_panoptic_133, ade20k_150, voc_20,
    toy_6), its ``unseen_names`` (and ``metric_unseen_names``) checked against the vocabulary so the lists and the
    class tables cannot drift apart."""
    entry = read_meta_file("open_vocab_splits.json")[name]
    categories = VOCABULARIES[name]()
    unseen = _named_ids(entry, "unseen", name, categories)
    metric_unseen = _named_ids(entry, "metric_unseen", name, categories) if "metric_unseen" in entry else None
    return OpenVocabSplit(name, categories, unseen, metric_unseen)


def _named_ids(entry: Dict[str, Any], key: str, name: str, categories: PanopticCategories) -> Tuple[int, ...]:
    ids = tuple(int(i) for i in entry[key])
    names = [categories.names[i] if 0 <= i < len(categories.names) else None for i in ids]
    if names != list(entry[f"{key}_names"]):
        raise ValueError(
            f"meta/open_vocab_splits.json: the {key} ids of {name} name {names}, not {entry[f'{key}_names']}; "
            "reinstall freemask"
        )
    return ids
