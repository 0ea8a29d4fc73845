"""image | ground truth | prediction panels of a few test images, for TensorBoard at each periodic evaluation.

Numbers say how much a model improved, panels say where: a user comparing real-only against joint training looks
at both. The panels are a handful of images (TEST.VIS_IMAGES, the first of DATASETS.TEST[0]), predicted as evaluation
predicts them (the test mapper's resize, then the model's own inference back to the original size), on rank 0 only,
so their cost is a few forward passes next to a whole evaluation.

The ground truth panel draws what the record holds: its semantic map, else the categories of its panoptic segments,
else those of its instance annotations (no object: black, as the ignore label), so a panoptic or instance split
without semantic maps gets panels too.
"""

import os
from typing import List, Mapping, Tuple

import numpy as np
import torch
from torch import nn

from ..config import CfgNode
from ..data.catalog import DatasetCatalog, MetadataCatalog
from ..data.datasets.sem_seg import default_palette
from ..data.mappers.build import build_mapper
from ..data.mappers.instance import category_map
from ..data.mappers.semantic import read_image
from ..data.object_records import instance_masks, panoptic_segment_ids
from ..utils import comm
from ..utils.events import MetricStorage
from ..utils.visualizer import prediction_panel

# TensorBoard tag prefix of the panels; the image's file stem follows.
TAG = "val_panels"


@torch.no_grad()
def prediction_panels(model: nn.Module, cfg: CfgNode, dataset_name: str, count: int) -> List[Tuple[str, np.ndarray]]:
    """``(tag, RGB (H, W, 3) uint8 panel)`` for the first ``count`` images of ``dataset_name``; the model's
    train/eval mode is restored afterwards."""
    records = DatasetCatalog.get(dataset_name)[:count]
    if not records:
        return []
    meta = MetadataCatalog.get(dataset_name)
    num_classes = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
    # An instance split names its thing classes only; its records number them 0..T-1 in that list.
    names = list(meta.get("stuff_classes") or meta.get("thing_classes") or [f"class_{i}" for i in range(num_classes)])
    colors = [list(c) for c in meta.get("stuff_colors") or meta.get("thing_colors") or default_palette(len(names))]
    # Labels are checked against the test set's own classes: an open-vocabulary model's test set names more classes
    # than its training one (MODEL.SEM_SEG_HEAD.NUM_CLASSES); for any other model the two counts are the same.
    mapper_cfg = cfg.clone()
    mapper_cfg.defrost()
    mapper_cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = len(names)
    mapper = build_mapper(mapper_cfg, is_train=False)
    ignore_label = cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE
    was_training = model.training
    model.eval()
    panels = []
    try:
        for record in records:
            sample = mapper(record, None)
            prediction = model([sample])[0]["sem_seg"].argmax(dim=0).cpu().numpy()
            image = read_image(record["file_name"])
            if "sem_seg" in sample:
                truth = sample["sem_seg"].numpy()
            else:
                truth = object_labels(record, image.shape[:2], ignore_label)
            panel = prediction_panel(image, truth, prediction, names, colors)
            panels.append((f"{TAG}/{os.path.splitext(os.path.basename(record['file_name']))[0]}", panel))
    finally:
        model.train(was_training)
    return panels


def object_labels(record: Mapping, shape: Tuple[int, int], ignore_label: int) -> np.ndarray:
    """int32 ``shape`` (H, W) category per pixel of a panoptic record's segments or an instance record's non-crowd
    annotations, ``ignore_label`` where there is no object; read and checked as training reads them."""
    if "pan_seg_file_name" in record:
        ids = panoptic_segment_ids(record, shape)
        return category_map(shape, ids, record["segments_info"], None, (), ignore_label)
    masks, classes = instance_masks(record, shape)
    return category_map(shape, None, (), masks, classes, ignore_label)


def log_prediction_panels(storage: MetricStorage, model: nn.Module, cfg: CfgNode) -> None:
    """Put TEST.VIS_IMAGES panels of DATASETS.TEST[0] into ``storage`` for the TensorBoard writer (rank 0 only).

    A classification test set (FreeSeg's stage 1: one masked crop per record, scored by accuracy) has no
    segmentation to draw, so it gets none."""
    if not comm.is_main_process() or cfg.TEST.VIS_IMAGES <= 0 or not cfg.DATASETS.TEST:
        return
    if MetadataCatalog.get(cfg.DATASETS.TEST[0]).get("evaluator_type") == "classification":
        return
    for tag, panel in prediction_panels(model, cfg, cfg.DATASETS.TEST[0], cfg.TEST.VIS_IMAGES):
        storage.put_image(tag, panel)
