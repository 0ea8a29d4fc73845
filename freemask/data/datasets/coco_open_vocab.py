"""COCO with FreeSeg's seen/unseen split (171 classes -> 156 seen / 15 unseen): COCO-Stuff semantic splits and the
"full task" splits (panoptic + semantic + instances over the same 171 classes), under FreeSeg's names.

Semantic (``datasets/prepare_coco_stuff_164k_open_vocab.py``): ``coco/stuffthingmaps_detectron2/{train,val}2017
[_base|_novel]/`` -> ``coco_2017_{train,test}_stuff[_base|_novel]_sem_seg``; ``coco_2017_train_stuff_sem_seg`` is the
FreeMask registration (coco_stuff.py) and stays as it is, the others are new (test = val2017).

Full task (``datasets/prepare_coco_full_task.py``): ``coco/panoptic_detectron2/{train,val}2017[_base|_novel]/`` +
``panoptic_{train,val}2017[_base|_novel].json`` (80 things from the panoptic PNGs, 91 stuff classes from the
stuffthingmaps, as bytedance/FreeSeg's datasets/prepare_coco_alldata.py), the same semantic maps, and the instance
JSON (the original for the full split, ``panoptic_detectron2/instances_*_{base,novel}.json`` for the others) ->
``coco_2017_{train,test}_full_task[_base|_novel]``. Every split has its ``_classification`` twin (stage 1); the
``_base`` splits' twins hold FreeSeg's full-task stage-1 records (semantic classes, thing instances and panoptic
segments, each with its task: classification.py).

FreeSeg's panoptic and instance test set (its all-task configs' ``coco_2017_val_panoptic_with_sem_seg``: COCO's
133 panoptic classes, bytedance/FreeSeg, mask2former/data/datasets/register_coco_panoptic.py) is registered here as
``coco_2017_val_panoptic_with_sem_seg_open_vocab``: the records of ``coco_2017_val_panoptic_with_sem_seg``
(coco_panoptic.py, Mask2Former's split, which stays closed-vocabulary) with FreeSeg's flags, split
``coco_panoptic_133`` of ``meta/open_vocab_splits.json``: ``trainable_flag`` marks 8 classes unseen (the model's
ensemble weights), ``evaluation_flag`` the 11 its evaluators average unseen PQ / AP over.
"""

import functools
from typing import Dict

from ...commands import hint
from ..catalog import DatasetCatalog, MetadataCatalog
from .coco_panoptic import coco_path, load_coco_panoptic
from .open_vocab import KINDS, kind_suffix, open_vocab_split
from .open_vocab_register import load_full_sem_seg, register_open_vocab_split
from .panoptic import load_coco_panoptic_json

COCO_PANOPTIC_OPEN_VOCAB = "coco_2017_val_panoptic_with_sem_seg_open_vocab"

COCO_OV_SPLITS = {"train": "train2017", "test": "val2017"}  # FreeSeg's name -> COCO folder
_SEM_HINT = f"run {hint('prepare', 'coco-stuff-164k-open-vocab')} (see datasets/README.md, FreeSeg section)"
_FULL_HINT = f"run {hint('prepare', 'coco-full-task')} (see datasets/README.md, FreeSeg section)"


def coco_full_task_paths(folder: str, kind: str) -> Dict[str, tuple]:
    """Relative paths (under ``coco/``) of one full-task split; the preparation writes exactly these."""
    sfx = kind_suffix(kind)
    instances = ("annotations", f"instances_{folder}.json") if kind == "all" else (
        "panoptic_detectron2", f"instances_{folder}{sfx}.json"
    )
    return {
        "image_root": (folder,),
        "sem_seg_root": ("stuffthingmaps_detectron2", folder + sfx),
        "panoptic_root": ("panoptic_detectron2", folder + sfx),
        "panoptic_json": ("panoptic_detectron2", f"panoptic_{folder}{sfx}.json"),
        "json_file": instances,
    }


def _load_sem_seg(folder: str, sub: str) -> list:
    return load_full_sem_seg(coco_path(folder), coco_path("stuffthingmaps_detectron2", sub), _SEM_HINT)


def _load_full_task(paths: dict, kind: str) -> list:
    return load_coco_panoptic_json(
        paths["panoptic_json"](),
        paths["image_root"](),
        paths["panoptic_root"](),
        open_vocab_split("coco_stuff_171").categories_of(kind),
        sem_seg_root=paths["sem_seg_root"](),
        hint=_FULL_HINT,
    )


def register_coco_panoptic_open_vocab() -> None:
    """Register FreeSeg's 133-class panoptic / instance test set (module docstring; no disk access). Its metadata
    has no ``evaluation_set``: FreeSeg reports no semantic subsets on this set."""
    if COCO_PANOPTIC_OPEN_VOCAB in DatasetCatalog:
        return
    meta = open_vocab_split("coco_panoptic_133").metadata("all")
    del meta["evaluation_set"]
    folder = "val2017"
    paths = {
        "image_root": functools.partial(coco_path, folder),
        "panoptic_root": functools.partial(coco_path, f"panoptic_{folder}"),
        "panoptic_json": functools.partial(coco_path, "annotations", f"panoptic_{folder}.json"),
        "json_file": functools.partial(coco_path, "annotations", f"instances_{folder}.json"),
        "sem_seg_root": functools.partial(coco_path, f"panoptic_semseg_{folder}"),
    }
    DatasetCatalog.register(COCO_PANOPTIC_OPEN_VOCAB, functools.partial(load_coco_panoptic, folder, True))
    MetadataCatalog.get(COCO_PANOPTIC_OPEN_VOCAB).set(evaluator_type="coco_panoptic_seg", **meta).set_lazy(**paths)


def register_coco_open_vocab() -> None:
    """Register the COCO-Stuff semantic and full-task splits and their stage-1 twins, and FreeSeg's panoptic test
    set (no disk access)."""
    register_coco_panoptic_open_vocab()
    split = open_vocab_split("coco_stuff_171")
    for name, folder in COCO_OV_SPLITS.items():
        for kind in KINDS:
            sub = folder + kind_suffix(kind)
            sem_paths = {
                "image_root": functools.partial(coco_path, folder),
                "sem_seg_root": functools.partial(coco_path, "stuffthingmaps_detectron2", sub),
            }
            sem_name = f"coco_2017_{name}_stuff{kind_suffix(kind)}_sem_seg"
            load = functools.partial(_load_sem_seg, folder, sub)
            register_open_vocab_split(sem_name, kind, split, load, sem_paths, "sem_seg", _SEM_HINT)
            paths = {k: functools.partial(coco_path, *p) for k, p in coco_full_task_paths(folder, kind).items()}
            full_name = f"coco_2017_{name}_full_task{kind_suffix(kind)}"
            load = functools.partial(_load_full_task, paths, kind)
            register_open_vocab_split(
                full_name, kind, split, load, paths, "coco_panoptic_seg", _FULL_HINT, full_task_stage1=kind == "base"
            )
