"""Dataset loaders and registration. Importing registers the builtin datasets (ADE20K, COCO-Stuff-164K, their
FreeMask synthetic splits, Cityscapes, COCO-Stuff-10k, the toy dataset, the panoptic/instance splits of COCO,
ADE20K and the toy, FreeSeg's open-vocabulary splits of COCO, ADE20K, PASCAL VOC and the toy, and the synthetic
splits in their seen-class vocabulary) lazily: their folders are read only when a split is loaded."""

from .ade20k import register_ade20k
from .ade20k_open_vocab import register_ade20k_open_vocab
from .ade20k_panoptic import register_ade20k_panoptic
from .cityscapes import register_cityscapes
from .coco_open_vocab import register_coco_open_vocab
from .coco_panoptic import register_coco_panoptic
from .coco_stuff import register_coco_stuff
from .coco_stuff_10k import register_coco_stuff_10k
from .custom import register_custom_from_config
from .sem_seg import load_sem_seg, register_sem_seg
from .synthetic import read_manifest, register_synthetic_splits, write_manifest
from .synthetic_open_vocab import register_synthetic_open_vocab
from .toy import register_toy
from .toy_open_vocab import register_toy_open_vocab
from .toy_panoptic import register_toy_panoptic
from .voc import register_voc

register_ade20k()
register_coco_stuff()
register_cityscapes()
register_coco_stuff_10k()
register_toy()
register_coco_panoptic()
register_ade20k_panoptic()
register_toy_panoptic()
register_coco_open_vocab()  # after register_coco_stuff: coco_2017_train_stuff_sem_seg stays FreeMask's
register_ade20k_open_vocab()
register_voc()
register_toy_open_vocab()
register_synthetic_open_vocab()

__all__ = [
    "load_sem_seg",
    "read_manifest",
    "register_ade20k",
    "register_ade20k_open_vocab",
    "register_ade20k_panoptic",
    "register_cityscapes",
    "register_coco_open_vocab",
    "register_coco_panoptic",
    "register_coco_stuff",
    "register_coco_stuff_10k",
    "register_custom_from_config",
    "register_sem_seg",
    "register_synthetic_open_vocab",
    "register_synthetic_splits",
    "register_toy",
    "register_toy_open_vocab",
    "register_toy_panoptic",
    "register_voc",
    "write_manifest",
]
