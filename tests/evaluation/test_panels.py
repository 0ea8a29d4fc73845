"""TensorBoard panels of splits without semantic maps (issue 24): the ground truth panel draws what the record has,
its instance annotations or its panoptic segments, where it used to stop with KeyError: 'sem_seg_file_name'."""

import json
import os

import cv2
import numpy as np
import pytest
import torch
from pycocotools import mask as mask_util
from torch import nn

from freemask.config import get_cfg
from freemask.data.catalog import DatasetCatalog, MetadataCatalog
from freemask.data.panoptic_png import rgb2id
from freemask.evaluation.panels import prediction_panels
from freemask.utils.visualizer import PANEL_GAP, colorize, upscale_small

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REAL = os.path.join("toy", "ADEChallengeData2016")


class ConstantModel(nn.Module):
    """Predicts class 0 everywhere at the input's original size (the panels' prediction half is not under test)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes

    def forward(self, batched_inputs):
        return [{"sem_seg": torch.zeros(self.num_classes, x["height"], x["width"])} for x in batched_inputs]


def toy_cfg(name: str):
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(REPO, "configs", "toy", f"{name}-segmentation",
                                     f"mask2former_R18_toy_{name}.yaml"))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TEST", "64"])
    return cfg


def truth_half(panel: np.ndarray, side: int) -> np.ndarray:
    return panel[:, side + PANEL_GAP : 2 * side + PANEL_GAP]


def test_instance_split_panels_draw_the_annotations(toy_datasets, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", toy_datasets)
    cfg = toy_cfg("instance")
    panels = prediction_panels(ConstantModel(2), cfg, "toy_instance_val", 2)
    with open(os.path.join(toy_datasets, REAL, "ade20k_instance_val.json")) as f:
        coco = json.load(f)
    colors = MetadataCatalog.get("toy_instance_val").thing_colors
    contiguous = {c["id"]: i for i, c in enumerate(coco["categories"])}
    records = DatasetCatalog.get("toy_instance_val")[:2]
    assert [tag for tag, _ in panels] == [f"val_panels/{os.path.splitext(os.path.basename(r['file_name']))[0]}"
                                          for r in records]  # fmt: skip
    drawn = 0
    for (_, panel), record in zip(panels, records):
        image = next(i for i in coco["images"] if i["id"] == record["image_id"])
        expected = np.full((image["height"], image["width"]), 255, np.int64)
        for ann in coco["annotations"]:
            if ann["image_id"] == record["image_id"] and not ann.get("iscrowd", 0):
                expected[mask_util.decode(ann["segmentation"]) > 0] = contiguous[ann["category_id"]]
                drawn += 1
        truth = upscale_small(colorize(expected, colors))
        np.testing.assert_array_equal(truth_half(panel, truth.shape[1]), truth)
    assert drawn > 0  # the test images hold objects, so the comparison is not of two empty panels


@pytest.fixture
def panoptic_only_split(toy_datasets, monkeypatch):
    """toy_panoptic_val's records without their semantic maps: a panoptic split with segments only."""
    monkeypatch.setenv("DETECTRON2_DATASETS", toy_datasets)
    records = [{k: v for k, v in r.items() if k not in ("sem_seg_file_name", "reduce_zero_label")}
               for r in DatasetCatalog.get("toy_panoptic_val")[:2]]  # fmt: skip
    name = "panels_panoptic_only"
    DatasetCatalog.register(name, lambda: records)
    MetadataCatalog.get(name).set(**{k: MetadataCatalog.get("toy_panoptic_val").get(k)
                                     for k in ("stuff_classes", "stuff_colors", "thing_classes")})  # fmt: skip
    yield name, records
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def test_panoptic_split_without_semantic_maps_draws_the_segments(panoptic_only_split):
    name, records = panoptic_only_split
    cfg = toy_cfg("panoptic")
    cfg.DATASETS.TEST = (name,)
    panels = prediction_panels(ConstantModel(6), cfg, name, 2)
    colors = MetadataCatalog.get(name).stuff_colors
    assert len(panels) == 2
    for (_, panel), record in zip(panels, records):
        ids = rgb2id(cv2.imread(record["pan_seg_file_name"])[..., ::-1])
        expected = np.full(ids.shape, 255, np.int64)
        for segment in record["segments_info"]:
            expected[ids == segment["id"]] = segment["category_id"]
        assert (expected != 255).any()
        truth = upscale_small(colorize(expected, colors))
        np.testing.assert_array_equal(truth_half(panel, truth.shape[1]), truth)
