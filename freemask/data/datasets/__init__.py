"""Dataset loaders and registration. Importing registers the builtin datasets (ADE20K, COCO-Stuff-164K, their
FreeMask synthetic splits, Cityscapes, COCO-Stuff-10k, the toy dataset) lazily: their folders are read only when a
split is loaded."""

from .ade20k import register_ade20k
from .cityscapes import register_cityscapes
from .coco_stuff import register_coco_stuff
from .coco_stuff_10k import register_coco_stuff_10k
from .custom import register_custom_from_config
from .sem_seg import load_sem_seg, register_sem_seg
from .synthetic import read_manifest, register_synthetic_splits, write_manifest
from .toy import register_toy

register_ade20k()
register_coco_stuff()
register_cityscapes()
register_coco_stuff_10k()
register_toy()

__all__ = [
    "load_sem_seg",
    "read_manifest",
    "register_ade20k",
    "register_cityscapes",
    "register_coco_stuff",
    "register_coco_stuff_10k",
    "register_custom_from_config",
    "register_sem_seg",
    "register_synthetic_splits",
    "register_toy",
    "write_manifest",
]
