"""Batch planning and pair reading of the filter."""

import cv2
import numpy as np
import pytest

from freemask.data.errors import DatasetError
from freemask.synthetic.filter.batches import PairReader, image_sizes, plan_batches


def test_plan_covers_every_index_once_and_depends_on_the_sizes_not_their_order():
    rng = np.random.default_rng(0)
    sizes = [tuple(int(v) for v in rng.choice([32, 48, 64], size=2)) for _ in range(50)]
    batches = plan_batches(sizes, batch_size=4)
    assert sorted(i for b in batches for i in b) == list(range(50))
    assert all(1 <= len(b) <= 4 for b in batches)
    order = rng.permutation(50)
    shuffled = [sizes[i] for i in order]
    assert [[shuffled[i] for i in b] for b in plan_batches(shuffled, 4)] == [[sizes[i] for i in b] for b in batches]


def test_plan_of_a_small_size_list_is_the_hand_computed_one():
    # Median area (256 + 768) / 2 = 512: a batch of 2 may hold 1024 padded pixels. Sorted by (H, W, index): the
    # 16x16 images 1, 3, 4, then the 32x32 images 0, 2, then 5 (48x16). 1 + 3 fill a batch; 4 + 0 would pad to
    # 2 x 32 x 32 = 2048 pixels, as would every later pair.
    sizes = [(32, 32), (16, 16), (32, 32), (16, 16), (16, 16), (48, 16)]
    assert plan_batches(sizes, batch_size=2) == [[1, 3], [4], [0], [2], [5]]


def test_same_sized_images_share_batches_without_padding():
    sizes = [(64, 64), (32, 128)] * 6  # equal areas: the pixel budget does not split batches
    batches = plan_batches(sizes, batch_size=4, max_padding=0.0)
    assert all(len({sizes[i] for i in b}) == 1 for b in batches)
    assert sorted(len(b) for b in batches) == [2, 2, 4, 4]


def test_padding_and_pixel_budget_bound_a_batch():
    # Padding 10x10 to 10x40 would quadruple the pixels: over a 25% padding allowance.
    assert plan_batches([(10, 10), (10, 40)], batch_size=8) == [[0], [1]]
    # One huge image among small ones gets a batch of its own (budget: batch size x median area).
    sizes = [(10, 10)] * 5 + [(100, 100)]
    batches = plan_batches(sizes, batch_size=4, max_padding=100.0)
    assert [5] in batches


def test_batch_size_must_be_positive():
    with pytest.raises(ValueError, match="batch size"):
        plan_batches([(1, 1)], 0)


def write(path, array):
    assert cv2.imwrite(str(path), array)
    return str(path)


def test_image_sizes_read_headers(tmp_path):
    paths = [write(tmp_path / f"{i}.png", np.zeros((10 + i, 20, 3), np.uint8)) for i in range(3)]
    assert image_sizes(paths) == [(10, 20), (11, 20), (12, 20)]
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match="bad.jpg"):
        image_sizes([str(tmp_path / "bad.jpg")])


def record(tmp_path, mask, size=(8, 10), reduce_zero=True):
    image = write(tmp_path / "img.png", np.full((*size, 3), 7, np.uint8))
    return {
        "file_name": image,
        "sem_seg_file_name": write(tmp_path / "mask.png", mask),
        "reduce_zero_label": reduce_zero,
    }


def test_reader_gives_training_labels_and_the_raw_mask(tmp_path):
    raw = np.zeros((8, 10), np.uint8)
    raw[:, 5:] = 3
    item = PairReader([record(tmp_path, raw)], num_classes=4, ignore_label=255, keep_raw=True)[0]
    assert item["image"].shape == (3, 8, 10)
    assert item["labels"][0, 0] == 255 and item["labels"][0, 9] == 2
    assert np.array_equal(item["raw"], raw)
    assert "raw" not in PairReader([record(tmp_path, raw)], 4, 255, keep_raw=False)[0]


@pytest.mark.parametrize(
    "mask, reduce_zero, match",
    [
        (np.zeros((9, 10), np.uint8), True, "mask is 10x9 but its image"),
        (np.full((8, 10), 6, np.uint8), True, "label 5 but the model has 4 classes"),
        (np.full((8, 10), 4, np.uint8), False, "--reduce-zero-label"),
    ],
)
def test_reader_reports_a_bad_pair_as_one_line_naming_the_mask(tmp_path, mask, reduce_zero, match):
    item = PairReader([record(tmp_path, mask, reduce_zero=reduce_zero)], 4, 255, keep_raw=False)[0]
    assert set(item) == {"index", "error"}
    assert match in item["error"] and "mask.png" in item["error"] and "\n" not in item["error"]
