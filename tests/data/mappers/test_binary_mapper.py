"""The stage-1 mapper (mask_former_binary_semantic): a square crop around one class mask, its output per contract B,
reproducible from the seed at training, at test FreeSeg's centre window worked out step by step, and the crop
helpers on hand-made masks (FreeSeg's box rule: bytedance/FreeSeg, mask2former/data/augmentations.py)."""

import pathlib

import cv2
import numpy as np
import pytest
import torch

from freemask.config import ConfigError, get_cfg
from freemask.data.errors import DatasetError
from freemask.data.mappers.binary import (
    BinarySemanticMapper,
    center_window,
    mask_box,
    random_resized_box,
    resize_binary,
)
from freemask.data.mappers.build import build_mapper


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
    # x 10, w 10 -> centre 15, w 100 -> [-35, 65] -> [0, min(29, 65)]: FreeSeg clamps the end to width - 1 = 29
    assert mask_box(mask, 10.0) == (0, 0, 19, 29)
    edge = np.zeros((5, 5), bool)
    edge[4, 4] = True
    assert mask_box(edge) == (4, 4, 5, 5)  # end clamped to 4, width 0 -> at least one pixel
    border = np.zeros((5, 5), bool)
    border[1:3, 3:5] = True  # touches the right border: x 3, w 2 -> end min(4, 5) = 4 -> width 1
    assert mask_box(border) == (1, 3, 3, 4)
    odd = np.zeros((10, 10), bool)
    odd[2:5, 2:5] = True  # x 2, w 3, ratio 1.5 -> centre 3.5, w 4.5 -> [1.25, 5.75] -> x int(1.25) 1, w int(4.5) 4
    assert mask_box(odd, 1.5) == (1, 1, 5, 5)


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
    assert resize_binary(mask, (20, 20)).any()
    assert resize_binary(mask, (22, 20)).shape == (22, 20)
    assert not resize_binary(np.zeros((9, 9), bool), (4, 4)).any()


def test_test_output_is_freesegs_centre_window(record):
    """Class 3 covers rows 10..29, columns 40..69: the box is that 20 x 30 crop, kept at its resolution; for a 32 px
    window it is padded by (32 - 20) / 2 = 6 rows above and below and (32 - 30) / 2 = 1 column each side."""
    mapper = BinarySemanticMapper(is_train=False, size_test=32)
    out = mapper(record)
    assert set(out) == {"file_name", "height", "width", "image", "instances"}
    assert (out["height"], out["width"]) == (60, 80)
    image, masks, classes = out["image"], out["instances"]["gt_masks"], out["instances"]["gt_classes"]
    assert image.dtype == torch.uint8 and image.shape == (3, 32, 32)
    assert masks.dtype == torch.bool and masks.shape == (1, 32, 32)
    assert classes.dtype == torch.int64 and classes.tolist() == [3]
    expected_red = np.zeros((32, 32), np.uint8)
    expected_red[6:26, 1:31] = np.arange(40, 70, dtype=np.uint8)[None]  # red = column index of the source
    assert np.array_equal(image[0].numpy(), expected_red) and not image[1:].any()
    expected_mask = np.zeros((32, 32), bool)
    expected_mask[6:26, 1:31] = True
    assert np.array_equal(masks[0].numpy(), expected_mask)
    assert torch.equal(mapper(record)["image"], image)  # deterministic
    # A window smaller than the crop: offsets round((20 - 16) / 2) = 2 rows, round((30 - 16) / 2) = 7 columns.
    small = BinarySemanticMapper(is_train=False, size_test=16)(record)["image"][0].numpy()
    assert np.array_equal(small, np.broadcast_to(np.arange(47, 63, dtype=np.uint8), (16, 16)))


def test_centre_window_rounds_half_offsets_to_even():
    image = np.arange(21 * 3, dtype=np.uint8).reshape(21, 3)[:, :, None].repeat(3, axis=2)
    binary = np.ones((21, 3), bool)
    window, mask = center_window(image, binary, 16)
    # rows: round((21 - 16) / 2) = round(2.5) = 2 (Python's round); columns: 3 -> 16, padded 6 left, 7 right
    assert window.shape == (16, 16, 3) and np.array_equal(window[:, 6:9, 0], image[2:18, :, 0])
    assert not window[:, :6].any() and not window[:, 9:].any()
    assert mask[:, 6:9].all() and not mask[:, :6].any() and not mask[:, 9:].any()


def test_training_crops_are_reproducible_and_hold_the_mask(record):
    mapper = BinarySemanticMapper(is_train=True, size_train=(24, 24), expand_ratio=1.5)
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
    # FreeSeg's RandomResizedCrop([w, h]): height MIN_SIZE_TRAIN[1], width MIN_SIZE_TRAIN[0] (its 244 x 224 crops)
    trained = train(record, np.random.default_rng(0))
    assert trained["image"].shape == (3, 44, 40) and trained["instances"]["gt_masks"].shape == (1, 44, 40)
    cfg.INPUT.MIN_SIZE_TRAIN = [40]
    assert build_mapper(cfg, is_train=True)(record, np.random.default_rng(0))["image"].shape == (3, 40, 40)
    cfg.INPUT.MIN_SIZE_TRAIN = [40, 44, 48]
    with pytest.raises(ConfigError, match=r"INPUT.MIN_SIZE_TRAIN \[40, 44, 48\]: the stage-1 crop size"):
        build_mapper(cfg, is_train=True)
    out = test(record)
    # the 20 x 30 box padded by 14 rows and 9 columns each side; red is the last channel
    assert out["image"].shape == (3, 48, 48) and out["image"][2, 14:34, 9:39].float().mean() > 40
