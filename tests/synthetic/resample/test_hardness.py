"""Mask hardness (freemask.synthetic.resample.hardness) against brute-force computations on hand-built masks."""

import math

import cv2
import numpy as np
import pytest

from freemask.data.errors import DatasetError
from freemask.data.mappers.semantic import reduce_zero_label
from freemask.synthetic.resample.hardness import (
    class_pixel_counts,
    compute_hardness,
    hardness_from_counts,
    label_histogram,
    mask_hardness,
    resize_nearest,
)

MEANS = np.array([0.5, 1.0, math.nan, 4.0])  # class 2 has no mean loss (absent from the real set)


def _write(path, mask) -> str:
    assert cv2.imwrite(str(path), mask)
    return str(path)


def _brute_force(mask: np.ndarray, means, ignore: int, reduce_zero: bool) -> float:
    """Pixel by pixel over the 512x512 nearest resize, in Python: sum of known means / number of such pixels."""
    h, w = mask.shape
    total, count = 0.0, 0
    for y in range(0, 512, 7):  # every 7th row/column of the resized grid, weighted 1 each: same average family
        for x in range(0, 512, 7):
            value = int(mask[(2 * y + 1) * h // 1024, (2 * x + 1) * w // 1024])
            if reduce_zero:
                if value in (0, ignore):
                    continue
                value -= 1
            elif value == ignore:
                continue
            if not math.isnan(means[value]):
                total += means[value]
                count += 1
    return total / count if count else 0.0


def _full_brute_force(mask: np.ndarray, means, ignore: int, reduce_zero: bool) -> float:
    """The definition on the whole 512x512 resize: the release's Pillow NEAREST, classes looped one by one."""
    image = pytest.importorskip("PIL.Image")
    resized = np.array(image.fromarray(mask).resize((512, 512), image.NEAREST))
    if reduce_zero:
        resized = reduce_zero_label(resized, ignore)
    total, count = 0.0, 0
    for value in np.unique(resized):
        if value == ignore or math.isnan(means[value]):
            continue
        pixels = int((resized == value).sum())
        total += pixels * means[value]
        count += pixels
    return total / count if count else 0.0


@pytest.mark.parametrize("shape", [(1, 1), (37, 100), (512, 683), (683, 512), (1000, 333), (1024, 2048)])
def test_resize_matches_pillow_nearest(shape):
    image = pytest.importorskip("PIL.Image")
    mask = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    expected = np.array(image.fromarray(mask).resize((512, 512), image.NEAREST))
    np.testing.assert_array_equal(resize_nearest(mask), expected)


def test_resize_samples_pixel_centres():
    # 3 rows of different labels resized to 512: the row boundaries fall at the centre-sampling positions.
    mask = np.repeat(np.array([[1], [2], [3]], dtype=np.uint8), 4, axis=1)
    rows = resize_nearest(mask)[:, 0]
    expected = np.array([1 + (2 * i + 1) * 3 // 1024 for i in range(512)])
    np.testing.assert_array_equal(rows, expected)


def test_label_histogram_uint8_and_uint16():
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (50, 70), dtype=np.uint8)
    np.testing.assert_array_equal(label_histogram(small), np.bincount(small.ravel(), minlength=256))
    wide = rng.integers(0, 400, (50, 70), dtype=np.uint16)
    np.testing.assert_array_equal(label_histogram(wide)[:400], np.bincount(wide.ravel(), minlength=400))


@pytest.mark.parametrize("reduce_zero", [False, True])
def test_class_pixel_counts_match_reduced_mask(reduce_zero):
    rng = np.random.default_rng(1)
    high = 5 if reduce_zero else 4  # raw masks store 0..K, prepared ones 0..K-1
    mask = rng.integers(0, high, (40, 40), dtype=np.uint8)
    mask[:5] = 255
    counts, unexpected = class_pixel_counts(label_histogram(mask), 4, 255, reduce_zero)
    labels = reduce_zero_label(mask, 255) if reduce_zero else mask
    np.testing.assert_array_equal(counts, [(labels == c).sum() for c in range(4)])
    assert unexpected.size == 0


def test_class_pixel_counts_reports_out_of_range_labels():
    mask = np.array([[0, 1, 4, 9, 255]], dtype=np.uint8)
    _, unexpected = class_pixel_counts(label_histogram(mask), 4, 255, False)
    assert unexpected.tolist() == [4, 9]
    _, unexpected = class_pixel_counts(label_histogram(mask), 4, 255, True)  # raw: 4 is class 3, 9 too high
    assert unexpected.tolist() == [9]


def test_hardness_from_counts_skips_unknown_classes_and_empty_masks():
    counts = np.array([[2, 2, 0, 0], [0, 0, 5, 0], [0, 0, 0, 0], [1, 0, 100, 1]])
    np.testing.assert_allclose(hardness_from_counts(counts, MEANS), [0.75, 0.0, 0.0, 2.25])


@pytest.mark.parametrize("reduce_zero", [False, True])
@pytest.mark.parametrize("shape", [(64, 96), (512, 512), (300, 701)])
def test_mask_hardness_equals_brute_force(tmp_path, reduce_zero, shape):
    rng = np.random.default_rng(shape[0])
    # blocky regions so the resize matters, plus scattered ignore pixels and a class without a mean
    blocks = rng.integers(0, 4, (8, 8)) + (1 if reduce_zero else 0)
    mask = cv2.resize(blocks.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    mask[rng.random(shape) < 0.1] = 0 if reduce_zero else 255
    mask[rng.random(shape) < 0.05] = 255
    path = _write(tmp_path / "m.png", mask)
    value = mask_hardness(path, MEANS, 255, reduce_zero)
    assert value == pytest.approx(_full_brute_force(mask, MEANS, 255, reduce_zero), rel=1e-12)
    # an independent sub-sampled estimate agrees roughly (guards the full brute force against shared mistakes)
    assert value == pytest.approx(_brute_force(mask, MEANS, 255, reduce_zero), rel=0.1)


def test_resize_changes_the_weights(tmp_path):
    # 3 rows: class 0, 1, 3. Resized to 512 rows, the middle row covers 170 or 171 rows, not exactly a third.
    mask = np.repeat(np.array([[0], [1], [3]], dtype=np.uint8), 5, axis=1)
    path = _write(tmp_path / "rows.png", mask)
    rows = np.bincount([(2 * i + 1) * 3 // 1024 for i in range(512)])
    expected = (rows[0] * 0.5 + rows[1] * 1.0 + rows[2] * 4.0) / 512
    assert mask_hardness(path, MEANS) == pytest.approx(expected)
    assert expected != pytest.approx((0.5 + 1.0 + 4.0) / 3, rel=1e-6)


def test_only_ignored_or_unknown_pixels_give_zero(tmp_path):
    path = _write(tmp_path / "void.png", np.array([[255, 2], [2, 255]], dtype=np.uint8))
    assert mask_hardness(path, MEANS) == 0.0


def test_label_outside_class_loss_is_an_error_naming_the_file(tmp_path):
    path = _write(tmp_path / "raw.png", np.array([[1, 4], [2, 3]], dtype=np.uint8))  # 4 = K: a raw ADE mask?
    with pytest.raises(DatasetError, match=r"raw\.png.*stored labels 4.*--reduce-zero-label"):
        mask_hardness(path, MEANS)
    path = _write(tmp_path / "wrong.png", np.array([[9, 0]], dtype=np.uint8))
    with pytest.raises(DatasetError, match=r"wrong\.png.*stored labels 9") as info:
        mask_hardness(path, MEANS, reduce_zero_label=True)
    assert "--reduce-zero-label" not in str(info.value)


def test_unreadable_mask_is_an_error(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="bad.png"):
        compute_hardness([str(bad)], MEANS)


def test_compute_hardness_threads_equal_sequential(tmp_path):
    rng = np.random.default_rng(3)
    paths = [_write(tmp_path / f"{i}.png", rng.integers(0, 4, (30 + i, 50), dtype=np.uint8)) for i in range(150)]
    seen = []
    sequential = compute_hardness(paths, MEANS, workers=1)
    threaded = compute_hardness(paths, MEANS, workers=3, progress=seen.append)
    np.testing.assert_array_equal(sequential, threaded)
    assert sum(seen) == len(paths)
    assert sequential[7] == mask_hardness(paths[7], MEANS)
    assert compute_hardness([], MEANS).shape == (0,)
