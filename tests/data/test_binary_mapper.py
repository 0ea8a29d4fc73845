"""The stage-1 mapper (mask_former_binary_semantic): a square crop around one class mask, its output per contract B,
reproducible from the seed at training, deterministic at test, and the crop helpers on hand-made masks."""

import pathlib

import cv2
import numpy as np
import pytest
import torch

from freemask.config import get_cfg
from freemask.data.binary_mapper import BinarySemanticMapper, mask_box, random_resized_box, resize_binary
from freemask.data.errors import DatasetError
from freemask.data.mappers import build_mapper


@pytest.fixture
def record(tmp_path: pathlib.Path):
    image = np.zeros((60, 80, 3), np.uint8)
    image[..., 0] = np.arange(80, dtype=np.uint8)[None]  # red grows to the right: crops are traceable
    labels = np.full((60, 80), 255, np.uint8)
    labels[10:30, 40:70] = 3
    labels[40:, :20] = 1
    cv2.imwrite(str(tmp_path / "img.png"), image[..., ::-1])
    cv2.imwrite(str(tmp_path / "mask.png"), labels)
    return {"file_name": str(tmp_path / "img.png"), "sem_seg_file_name": str(tmp_path / "mask.png"), "category_id": 3}


def test_mask_box_expands_about_the_centre_and_clips():
    mask = np.zeros((20, 30), bool)
    mask[4:8, 10:20] = True
    assert mask_box(mask) == (4, 10, 8, 20)
    assert mask_box(mask, 2.0) == (2, 5, 10, 25)
    assert mask_box(mask, 10.0) == (0, 0, 20, 30)
    edge = np.zeros((5, 5), bool)
    edge[4, 4] = True
    assert mask_box(edge) == (4, 4, 5, 5)  # the last row and column stay in the box


def test_random_resized_box_holds_the_mask():
    mask = np.zeros((50, 50), bool)
    mask[0, 0] = True
    rng = np.random.default_rng(0)
    for _ in range(50):
        y0, x0, y1, x1 = random_resized_box(mask, rng)
        assert mask[y0:y1, x0:x1].any()
        assert 0 <= y0 < y1 <= 50 and 0 <= x0 < x1 <= 50


def test_resize_binary_never_loses_a_thin_mask():
    mask = np.zeros((200, 200), bool)
    mask[101, :] = True  # one row, between the rows nearest-neighbour samples at 1/10
    assert resize_binary(mask, 20).any()
    assert not resize_binary(np.zeros((9, 9), bool), 4).any()


def test_test_output_is_the_box_resized(record):
    mapper = BinarySemanticMapper(is_train=False, size_test=32)
    out = mapper(record)
    assert set(out) == {"file_name", "height", "width", "image", "instances"}
    assert (out["height"], out["width"]) == (60, 80)
    image, masks, classes = out["image"], out["instances"]["gt_masks"], out["instances"]["gt_classes"]
    assert image.dtype == torch.uint8 and image.shape == (3, 32, 32)
    assert masks.dtype == torch.bool and masks.shape == (1, 32, 32) and masks.all()  # the box is the mask
    assert classes.dtype == torch.int64 and classes.tolist() == [3]
    red = image[0].float().mean(dim=0)
    assert 40 <= red.min() and red.max() < 70  # columns 40..69 only
    assert torch.equal(mapper(record)["image"], image)  # deterministic


def test_training_crops_are_reproducible_and_hold_the_mask(record):
    mapper = BinarySemanticMapper(is_train=True, size_train=24, expand_ratio=1.5)
    outs = [mapper(dict(record, category_id=1), np.random.default_rng(seed)) for seed in range(8)]
    for out in outs:
        assert out["image"].shape == (3, 24, 24) and out["instances"]["gt_masks"].any()
    again = mapper(dict(record, category_id=1), np.random.default_rng(3))
    assert torch.equal(again["image"], outs[3]["image"])
    assert len({bytes(o["image"].numpy()) for o in outs}) > 1  # the draws differ
    with pytest.raises(ValueError, match="needs an rng"):
        mapper(record)


def test_a_class_absent_from_the_mask_is_one_line(record):
    with pytest.raises(DatasetError, match="class 5 is not in the mask.*label counts are stale"):
        BinarySemanticMapper(is_train=False)(dict(record, category_id=5))


def test_built_from_the_config(record):
    cfg = get_cfg()
    cfg.INPUT.DATASET_MAPPER_NAME = "mask_former_binary_semantic"
    cfg.INPUT.MIN_SIZE_TRAIN = [40, 44]
    cfg.INPUT.MIN_SIZE_TEST = 48
    cfg.INPUT.FORMAT = "BGR"
    train, test = build_mapper(cfg, is_train=True), build_mapper(cfg, is_train=False)
    assert train(record, np.random.default_rng(0))["image"].shape == (3, 40, 40)
    out = test(record)
    assert out["image"].shape == (3, 48, 48) and out["image"][2].float().mean() > 40  # red is the last channel
