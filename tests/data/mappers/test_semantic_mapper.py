import os

import cv2
import numpy as np
import pytest
import torch

from freemask.config import get_cfg
from freemask.data.errors import DatasetError
from freemask.data.mappers.semantic import SemSegDatasetMapper, label_tensor, reduce_zero_label

IGNORE = 255
# Colour of each label 0..5 (RGB, none black: black marks padding); ignored pixels are drawn in IGNORE_COLOR.
PALETTE = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [255, 0, 255], [0, 255, 255]], np.uint8)
IGNORE_COLOR = np.array([128, 128, 0], np.uint8)


def label_scene(height=96, width=128, seed=0):
    """(H, W) labels 0..5 in rectangles, with an ignored block, and the RGB image whose colour encodes the label."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((height, width), np.uint8)
    for label in range(1, 6):
        y, x = rng.integers(0, height - 20), rng.integers(0, width - 20)
        mask[y : y + rng.integers(12, 40), x : x + rng.integers(12, 50)] = label
    mask[:10, -10:] = IGNORE
    image = np.where((mask == IGNORE)[..., None], IGNORE_COLOR, PALETTE[np.minimum(mask, 5)])
    return image, mask


def write_pair(folder, image, mask, stem="scene", image_ext=".png"):
    """Image saved losslessly (PNG) unless asked otherwise, so colours decode exactly."""
    image_path, mask_path = os.path.join(folder, stem + image_ext), os.path.join(folder, stem + "_mask.png")
    cv2.imwrite(image_path, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    cv2.imwrite(mask_path, mask)
    return {"file_name": image_path, "sem_seg_file_name": mask_path, "reduce_zero_label": False}


def decode(image_chw):
    """Label of each pixel from its colour (nearest palette colour; IGNORE for the ignore colour, -1 for black)."""
    pixels = image_chw.permute(1, 2, 0).numpy().astype(int)
    colors = np.concatenate([PALETTE, IGNORE_COLOR[None], np.zeros((1, 3), np.uint8)]).astype(int)
    nearest = np.abs(pixels[:, :, None, :] - colors[None, None]).sum(-1).argmin(-1)
    return np.array(list(range(6)) + [IGNORE, -1])[nearest]


def train_mapper(**kwargs):
    args = {
        "min_size_train": [96],
        "max_size_train": 1000,
        "crop_size": (64, 64),
        "cat_max_ratio": 0.75,
        "flip": True,
        "color_aug": False,
        "ignore_label": IGNORE,
    }
    return SemSegDatasetMapper(True, **{**args, **kwargs})


@pytest.mark.parametrize("crop_size", [(64, 64), (128, 160)])
def test_train_geometry_moves_image_and_mask_together_without_resize(tmp_path, crop_size):
    record = write_pair(str(tmp_path), *label_scene())
    mapper = train_mapper(crop_size=crop_size)  # shortest edge 96 = the image's: crop, flip and pad only
    flips = set()
    for seed in range(30):
        out = mapper(record, np.random.default_rng(seed))
        image, mask = out["image"], out["sem_seg"].numpy()
        assert image.dtype == torch.uint8 and out["sem_seg"].dtype == torch.uint8  # 8-bit labels ship as uint8
        assert image.shape == (3, *crop_size) and mask.shape == crop_size
        valid_h, valid_w = min(96, crop_size[0]), min(128, crop_size[1])
        labels = decode(image)
        assert (labels[:valid_h, :valid_w] == mask[:valid_h, :valid_w]).all()
        pad = np.ones(crop_size, bool)
        pad[:valid_h, :valid_w] = False
        assert (image.numpy()[:, pad] == 0).all() and (mask[pad] == IGNORE).all()
        flips.add(bool(labels[0, valid_w - 1] == IGNORE))  # the ignored block sits top-right unless flipped
    if crop_size == (128, 160):
        assert flips == {True, False}


def test_train_geometry_with_resize_agrees_away_from_boundaries(tmp_path):
    record = write_pair(str(tmp_path), *label_scene())
    mapper = train_mapper(min_size_train=[60, 80, 120, 150])
    for seed in range(30):
        out = mapper(record, np.random.default_rng(seed))
        mask = out["sem_seg"].numpy()
        labels = decode(out["image"])
        real = mask != IGNORE
        # bilinear image vs nearest mask may differ on boundaries only: demand agreement where the 5x5 window of the
        # mask is uniform (away from the crop's edges, beyond which the window is unseen), and on nearly every pixel
        kernel = np.ones((5, 5), np.uint8)
        uniform = cv2.erode(mask.astype(np.uint8), kernel) == cv2.dilate(mask.astype(np.uint8), kernel)
        uniform[:2], uniform[-2:], uniform[:, :2], uniform[:, -2:] = False, False, False, False
        assert (labels[uniform & real] == mask[uniform & real]).all()
        assert (labels[real] == mask[real]).mean() > 0.9


def test_padding_is_zero_and_ignore(tmp_path):
    image, mask = label_scene(40, 50)
    out = train_mapper(min_size_train=[40], crop_size=(64, 64), flip=False, color_aug=True)(
        write_pair(str(tmp_path), image, mask), np.random.default_rng(0)
    )
    assert (out["image"][:, 40:, :] == 0).all() and (out["image"][:, :, 50:] == 0).all()
    assert (out["sem_seg"][40:, :] == IGNORE).all() and (out["sem_seg"][:, 50:] == IGNORE).all()
    assert torch.equal(out["sem_seg"][:40, :50], torch.from_numpy(mask).long())


def test_same_seed_same_sample_and_seeds_differ(tmp_path):
    record = write_pair(str(tmp_path), *label_scene())
    mapper = train_mapper(min_size_train=[64, 96, 128], color_aug=True)
    a = mapper(record, np.random.default_rng(7))
    b = mapper(record, np.random.default_rng(7))
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["sem_seg"], b["sem_seg"])
    others = [mapper(record, np.random.default_rng(seed))["image"] for seed in range(8, 12)]
    assert any(not torch.equal(a["image"], o) for o in others)
    with pytest.raises(ValueError, match="rng"):
        mapper(record)


def test_color_aug_changes_pixels_not_labels(tmp_path):
    record = write_pair(str(tmp_path), *label_scene())
    plain, colour = train_mapper(), train_mapper(color_aug=True)
    changed = 0
    for seed in range(10):
        a, b = plain(record, np.random.default_rng(seed)), colour(record, np.random.default_rng(seed))
        assert torch.equal(a["sem_seg"], b["sem_seg"]) and b["image"].dtype == torch.uint8
        changed += not torch.equal(a["image"], b["image"])
    assert changed >= 7


def test_test_mapper_resizes_image_and_keeps_original_ground_truth(tmp_path):
    image, mask = label_scene(96, 128)
    record = write_pair(str(tmp_path), image, mask)
    out = SemSegDatasetMapper(False, min_size_test=64, max_size_test=1000)(record)
    assert out["image"].shape == (3, 64, 85) and out["image"].dtype == torch.uint8
    assert out["sem_seg"].shape == (96, 128) and out["sem_seg"].dtype == torch.int64
    assert (out["height"], out["width"]) == (96, 128)
    assert torch.equal(out["sem_seg"], torch.from_numpy(mask).long())
    capped = SemSegDatasetMapper(False, min_size_test=96, max_size_test=100)(record)
    assert capped["image"].shape == (3, 75, 100)


def test_reduce_zero_label_keeps_ignore_without_wrap():
    raw = np.array([[0, 1, 2, 150, 254, 255]], np.uint8)
    assert reduce_zero_label(raw, 255).tolist() == [[255, 0, 1, 149, 253, 255]]
    assert reduce_zero_label(raw.astype(np.uint16), 255).tolist() == [[255, 0, 1, 149, 253, 255]]


def test_mapper_applies_reduce_zero_label_from_record(tmp_path):
    image, _ = label_scene(32, 32)
    raw = np.zeros((32, 32), np.uint8)
    raw[:, 8:16], raw[:, 16:24], raw[:, 24:] = 1, 6, 255
    record = dict(write_pair(str(tmp_path), image, raw), reduce_zero_label=True)
    out = SemSegDatasetMapper(False, min_size_test=32)(record)
    assert out["sem_seg"][0].tolist() == [255] * 8 + [0] * 8 + [5] * 8 + [255] * 8


def test_from_config_reads_input_keys():
    cfg = get_cfg()
    cfg.INPUT.CROP.SIZE = [128, 96]
    cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA = 1.0
    cfg.INPUT.RANDOM_FLIP = "none"
    cfg.INPUT.COLOR_AUG_SSD = False
    cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE = 200
    mapper = SemSegDatasetMapper.from_config(cfg, is_train=True)
    assert mapper.crop_size == (128, 96) and mapper.cat_max_ratio == 1.0 and not mapper.flip and not mapper.color_aug
    assert mapper.ignore_label == 200 and mapper.min_size_train == tuple(cfg.INPUT.MIN_SIZE_TRAIN)
    cfg.INPUT.CROP.ENABLED = False
    assert SemSegDatasetMapper.from_config(cfg, is_train=True).crop_size is None
    cfg.INPUT.RANDOM_FLIP = "vertical"
    with pytest.raises(ValueError, match="INPUT.RANDOM_FLIP"):
        SemSegDatasetMapper.from_config(cfg, is_train=True)


# ------------------------------------------------------------------------------------------------------- bad input
def assert_one_line_error(mapper, record, filename, match=None):
    with pytest.raises(DatasetError, match=match) as error:
        mapper(record, np.random.default_rng(0))
    message = str(error.value)
    assert filename in message and "\n" not in message
    return message


@pytest.mark.parametrize("is_train", [True, False])
def test_missing_image_or_mask(tmp_path, is_train):
    record = write_pair(str(tmp_path), *label_scene(32, 32))
    mapper = train_mapper() if is_train else SemSegDatasetMapper(False)
    os.remove(record["sem_seg_file_name"])
    assert_one_line_error(mapper, record, "scene_mask.png", "cannot read mask")
    os.remove(record["file_name"])
    assert_one_line_error(mapper, record, "scene.png", "cannot read image")


def test_truncated_jpeg(tmp_path):
    image, mask = label_scene()
    record = write_pair(str(tmp_path), image, mask, image_ext=".jpg")
    with open(record["file_name"], "rb") as f:
        data = f.read()
    with open(record["file_name"], "wb") as f:
        f.write(data[: len(data) // 2])
    message = assert_one_line_error(train_mapper(), record, "scene.jpg", "truncated")
    assert "tools/check_dataset.py" in message


def test_size_mismatch(tmp_path):
    image, mask = label_scene(32, 48)
    record = write_pair(str(tmp_path), image, mask[:, :40])
    message = assert_one_line_error(train_mapper(), record, "scene_mask.png")
    assert "40x32" in message and "48x32" in message


def test_rgb_mask(tmp_path):
    image, mask = label_scene(32, 32)
    record = write_pair(str(tmp_path), image, mask)
    cv2.imwrite(record["sem_seg_file_name"], np.repeat(mask[..., None], 3, axis=2))
    assert_one_line_error(SemSegDatasetMapper(False), record, "scene_mask.png", "single-channel")


def test_not_an_image(tmp_path):
    record = write_pair(str(tmp_path), *label_scene(32, 32))
    with open(record["file_name"], "wb") as f:
        f.write(b"")
    assert_one_line_error(train_mapper(), record, "scene.png")


def test_bgr_format_reverses_channels(tmp_path):
    image = np.zeros((8, 8, 3), np.uint8)
    image[..., 0] = 200  # red in RGB
    record = write_pair(str(tmp_path), image, np.ones((8, 8), np.uint8), image_ext=".png")
    rgb = SemSegDatasetMapper(False, min_size_test=8, max_size_test=8)(record)["image"]
    bgr = SemSegDatasetMapper(False, min_size_test=8, max_size_test=8, image_format="BGR")(record)["image"]
    assert rgb[0].float().mean() == 200 and rgb[2].float().mean() == 0
    assert torch.equal(bgr, rgb.flip(0))


# ---------------------------------------------------------------------------------------------- label range (#18.7)
@pytest.mark.parametrize("is_train", [True, False])
def test_out_of_range_label_names_file_value_class_count_and_fix(tmp_path, is_train):
    image, mask = label_scene(32, 32)
    mask[20:24, 20:24] = 199
    record = write_pair(str(tmp_path), image, mask)
    mapper = train_mapper(num_classes=6) if is_train else SemSegDatasetMapper(False, num_classes=6)
    message = assert_one_line_error(mapper, record, "scene_mask.png", "label 199")
    assert "NUM_CLASSES 6" in message and "0..5" in message and "fix" in message and "check_dataset" in message


def test_label_range_respects_ignore_and_reduce_zero_label(tmp_path):
    image, _ = label_scene(32, 32)
    raw = np.zeros((32, 32), np.uint8)  # raw ADE convention: 0 and 255 ignored, 1..6 are classes 0..5
    raw[:, 8:16], raw[:, 16:24], raw[:, 24:] = 1, 6, 255
    record = dict(write_pair(str(tmp_path), image, raw), reduce_zero_label=True)
    SemSegDatasetMapper(False, min_size_test=32, num_classes=6)(record)  # in range once reduced
    raw[0, 0] = 8  # class 7 after reduction: out of range for 6 classes
    cv2.imwrite(record["sem_seg_file_name"], raw)
    message = assert_one_line_error(SemSegDatasetMapper(False, num_classes=6), record, "scene_mask.png", "label 7")
    assert "after reducing the zero label" in message


def test_from_config_takes_the_class_count_of_the_head():
    cfg = get_cfg()
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 6
    assert SemSegDatasetMapper.from_config(cfg, is_train=False).num_classes == 6


@pytest.mark.parametrize(
    "values, dtype",
    [
        ([0, 149, 255], torch.uint8),  # ADE20K-style: 150 classes and ignore 255 after reduction
        ([0, 255], torch.uint8),
        ([0, 846, 255], torch.int16),  # ADE-full style: 847 classes in a uint16 PNG
        ([0, 40000], torch.int32),  # beyond int16
        ([-1, 3], torch.int16),  # signed maps keep their sign
    ],
)
def test_label_tensor_picks_the_smallest_dtype_holding_the_labels(values, dtype):
    source = np.uint8 if max(values) <= 255 and min(values) >= 0 else (np.int32 if min(values) < 0 else np.uint16)
    mask = np.array(values * 4, dtype=source).reshape(2, -1)
    out = label_tensor(mask)
    assert out.dtype == dtype and out.shape == mask.shape
    assert out.long().tolist() == mask.astype(np.int64).tolist()
    mask[0, 0] = 7  # a copy: the tensor does not see later writes to the (possibly larger, augmented) array
    assert out[0, 0] == values[0]


def test_uint16_mask_with_small_labels_ships_as_uint8(tmp_path):
    image, mask = label_scene()
    record = write_pair(str(tmp_path), image, mask.astype(np.uint16))
    assert cv2.imread(record["sem_seg_file_name"], cv2.IMREAD_UNCHANGED).dtype == np.uint16
    narrow_record = write_pair(str(tmp_path), image, mask, stem="narrow")
    wide = train_mapper()(record, np.random.default_rng(3))
    narrow = train_mapper()(narrow_record, np.random.default_rng(3))
    assert wide["sem_seg"].dtype == torch.uint8 and torch.equal(wide["sem_seg"], narrow["sem_seg"])
