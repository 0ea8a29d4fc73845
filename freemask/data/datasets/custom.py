"""A user's own dataset registered from the config alone (``DATASETS.CUSTOM.*``), without writing Python.

``register_custom_from_config`` is called by every entry point's setup, possibly more than once per process (a
test, a notebook), so registering the same settings twice is a no-op, while the same NAME with different settings
is an error: silently keeping the first registration would train on data the config no longer describes.
"""

import os
from typing import Dict, List, Tuple

from ...errors import ConfigError
from ..catalog import DatasetCatalog
from ..errors import DatasetError
from .sem_seg import register_sem_seg

# split name suffix -> ADE20K-layout split folder
CUSTOM_SPLITS = {"sem_seg_train": "training", "sem_seg_val": "validation"}
# Settings of the custom datasets this module registered (dataset name -> settings), to tell a repeat from a clash.
_REGISTERED: Dict[str, Tuple] = {}


def read_class_names(path: str) -> List[str]:
    """Class names of a text file, one per line (line k names label k; surrounding spaces are stripped).

    Blank lines are errors rather than skipped, since skipping one would shift every later label."""
    key = "DATASETS.CUSTOM.CLASSES_FILE"
    if not path:
        raise ConfigError(f"{key} is empty; set it to a text file with one class name per line (line k = label k)")
    if not os.path.isfile(path):
        raise DatasetError(f"{key}: {path} not found; create it with one class name per line (line k = label k)")
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    while lines and not lines[-1].strip():  # a trailing newline or two is not a class
        lines.pop()
    names = [line.strip() for line in lines]
    if not names:
        raise DatasetError(f"{key}: {path} is empty; write one class name per line (line k = label k)")
    first_line: Dict[str, int] = {}
    for number, name in enumerate(names, 1):
        if not name:
            raise DatasetError(f"{path}:{number}: blank class name; every line up to the last names one label")
        if name in first_line:
            raise DatasetError(
                f"{path}:{number}: class '{name}' already named on line {first_line[name]}; class names must be unique"
            )
        first_line[name] = number
    return names


def register_custom_from_config(cfg) -> List[str]:
    """Register ``<NAME>_sem_seg_train`` and ``<NAME>_sem_seg_val`` from ``cfg.DATASETS.CUSTOM`` and return their
    names ([] when NAME is empty). The folders are read when a split is loaded; the class file is read now."""
    custom = cfg.DATASETS.CUSTOM
    name = custom.NAME.strip()
    if not name:
        return []
    if not custom.ROOT:
        raise ConfigError(
            "DATASETS.CUSTOM.ROOT is empty; set it to the folder holding images/{training,validation} and "
            "annotations/{training,validation}"
        )
    classes = read_class_names(custom.CLASSES_FILE)
    ignore = int(custom.IGNORE_LABEL)
    if not len(classes) <= ignore <= 255:
        raise ConfigError(
            f"DATASETS.CUSTOM.IGNORE_LABEL {ignore} must be in {len(classes)}..255 (not a class of the "
            f"{len(classes)} in {custom.CLASSES_FILE})"
        )
    for key in ("IMAGE_EXT", "MASK_EXT"):
        if not custom[key].startswith("."):
            raise ConfigError(f"DATASETS.CUSTOM.{key} must start with '.', e.g. '.jpg' or '.png'; got {custom[key]!r}")
    root = os.path.abspath(custom.ROOT)
    settings = (root, tuple(classes), ignore, bool(custom.REDUCE_ZERO_LABEL), custom.IMAGE_EXT, custom.MASK_EXT)
    names = [f"{name}_{suffix}" for suffix in CUSTOM_SPLITS]
    for dataset in names:
        if dataset in _REGISTERED and dataset not in DatasetCatalog:  # removed from the catalog since
            del _REGISTERED[dataset]
        if dataset in _REGISTERED and _REGISTERED[dataset] != settings:
            raise ConfigError(
                f"dataset '{dataset}' is already registered with other DATASETS.CUSTOM settings in this process; "
                f"use another DATASETS.CUSTOM.NAME for different data"
            )
        if dataset in DatasetCatalog and dataset not in _REGISTERED:
            raise ConfigError(
                f"DATASETS.CUSTOM.NAME '{name}' gives '{dataset}', which is already a registered dataset; "
                f"choose another name"
            )
    for dataset, split in zip(names, CUSTOM_SPLITS.values()):
        if dataset in _REGISTERED:
            continue
        register_sem_seg(
            dataset,
            os.path.join(root, "images", split),
            os.path.join(root, "annotations", split),
            stuff_classes=classes,
            ignore_label=ignore,
            image_ext=custom.IMAGE_EXT,
            mask_ext=custom.MASK_EXT,
            reduce_zero_label=settings[3],
        )
        _REGISTERED[dataset] = settings
    return names
