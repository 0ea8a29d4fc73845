"""``INPUT.DATASET_MAPPER_NAME`` -> the mapper that turns a dataset record into a model input (Mask2Former's names).

Which mapper a config trains with is data, not code: each name is a builder ``(cfg, is_train) -> mapper``. The
semantic mapper is the default, so every config written before panoptic / instance existed keeps its pipeline.
The panoptic / instance names differ only in the augmentation recipe (facebookresearch/Mask2Former,
mask2former/data/dataset_mappers/): Mask2Former's ``MaskFormerPanopticDatasetMapper`` /
``MaskFormerInstanceDatasetMapper`` (ADE: the semantic-style recipe) and
``COCO{Panoptic,Instance}NewBaselineDatasetMapper`` (COCO: large-scale jitter). Our ``InstanceDatasetMapper`` reads
either record kind, so the panoptic and instance names of one recipe build the same mapper; the name still says which
records the config expects. ``open_vocab_all_task`` is FreeSeg's all-task mapper (``AllTaskDatasetMapper``: the semantic
map and the segments with thing flags, after its semantic-style recipe: bytedance/FreeSeg,
mask2former/data/dataset_mappers/coco_full_task_new_baseline_dataset_mapper.py,
``COCOFullTaskNewBaselineDatasetMapper``).

At test time every mapper returns ``file_name``, ``height``, ``width`` (the original size), the image at the test
resize, ``image_id`` when the record has one, and ``sem_seg`` at the original size when the record names a semantic
map: what the semantic, panoptic and instance evaluators read.
"""

import functools
from typing import Any, Callable, Dict, Optional

import numpy as np

from ...config import CfgNode, ConfigError
from .all_task import AllTaskDatasetMapper
from .binary import BinarySemanticMapper
from .instance import InstanceDatasetMapper
from .semantic import SemSegDatasetMapper

__all__ = ["MAPPERS", "build_mapper"]

Mapper = Callable[[dict, Optional[np.random.Generator]], Dict[str, Any]]

MAPPERS: Dict[str, Callable[[CfgNode, bool], Mapper]] = {
    "mask_former_semantic": SemSegDatasetMapper.from_config,
    "mask_former_panoptic": functools.partial(InstanceDatasetMapper.from_config, recipe="semantic"),
    "mask_former_instance": functools.partial(InstanceDatasetMapper.from_config, recipe="semantic"),
    "coco_panoptic_lsj": functools.partial(InstanceDatasetMapper.from_config, recipe="lsj"),
    "coco_instance_lsj": functools.partial(InstanceDatasetMapper.from_config, recipe="lsj"),
    # FreeSeg's stage 2: the semantic map and the segments with thing flags (all_task.py)
    "open_vocab_all_task": AllTaskDatasetMapper.from_config,
    # FreeSeg's stage 1: one class mask per record, cropped around it (binary.py)
    "mask_former_binary_semantic": BinarySemanticMapper.from_config,
}


def build_mapper(cfg: CfgNode, is_train: bool) -> Mapper:
    """The mapper ``INPUT.DATASET_MAPPER_NAME`` names, built from ``cfg``; an unknown name lists the valid ones."""
    name = cfg.INPUT.DATASET_MAPPER_NAME
    if name not in MAPPERS:
        raise ConfigError(f"INPUT.DATASET_MAPPER_NAME {name!r} is not a mapper; valid names: {', '.join(MAPPERS)}")
    return MAPPERS[name](cfg, is_train=is_train)
