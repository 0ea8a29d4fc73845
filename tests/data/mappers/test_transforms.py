import cv2
import numpy as np
import pytest

from freemask.data.mappers import transforms as T


def test_sample_shortest_edge_choice_and_range():
    rng = np.random.default_rng(0)
    choices = {T.sample_shortest_edge([256, 512, 1024], "choice", rng) for _ in range(100)}
    assert choices == {256, 512, 1024}
    drawn = [T.sample_shortest_edge([100, 104], "range", rng) for _ in range(200)]
    assert set(drawn) == {100, 101, 102, 103, 104}
    with pytest.raises(ValueError, match="choice"):
        T.sample_shortest_edge([1, 2], "uniform", rng)


def test_shortest_edge_size_keeps_aspect_and_caps_longest_edge():
    assert T.shortest_edge_size(480, 640, 512, 2048) == (512, 683)
    assert T.shortest_edge_size(640, 480, 512, 2048) == (683, 512)
    # shortest edge 512 would make the longest 5120 > 2048: the cap wins
    assert T.shortest_edge_size(100, 1000, 512, 2048) == (205, 2048)


def test_resize_image_and_mask():
    image = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    mask = np.zeros((30, 40), np.uint8)
    mask[:, 20:] = 7
    assert T.resize_image(image, (30, 40)) is image  # unchanged size: no work
    resized = T.resize_mask(mask, (60, 80))
    assert resized.dtype == np.uint8 and set(np.unique(resized)) == {0, 7}  # nearest: no invented labels
    assert (resized[:, :40] == 0).all() and (resized[:, 40:] == 7).all()
    test = T.resize_for_test(image, 60, 1000)
    assert test.shape == (60, 80, 3) and test.dtype == np.uint8


def test_crop_box_covers_whole_axis_when_image_is_smaller():
    mask = np.zeros((50, 300), np.uint8)
    rng = np.random.default_rng(0)
    for _ in range(20):
        y0, x0, y1, x1 = T.random_crop_box(mask, (64, 64), rng)
        assert (y0, y1) == (0, 50) and 0 <= x0 and x1 == x0 + 64 <= 300


def _left_strip_mask():
    """64x256: class 1 in the 32 left columns, class 0 elsewhere, ignore in the bottom rows (excluded from ratios)."""
    mask = np.zeros((64, 256), np.uint8)
    mask[:, :32] = 1
    mask[56:] = 255
    return mask


def _informative_fraction(cat_max_ratio, n=300):
    """Fraction of 64x64 crops where no class covers >= 75% of the labelled pixels (needs x0 < 16)."""
    mask = _left_strip_mask()
    hits = 0
    for seed in range(n):
        box = T.random_crop_box(mask, (64, 64), np.random.default_rng(seed), cat_max_ratio, ignore_label=255)
        counts = np.bincount(T.crop(mask, box).ravel(), minlength=256)[:255]
        counts = counts[counts > 0]
        hits += len(counts) > 1 and counts.max() < 0.75 * counts.sum()
    return hits / n


def test_cat_max_ratio_redraws_dominated_crops():
    # one draw succeeds with p = 16/193; ten re-draws raise it to about 0.6
    assert _informative_fraction(1.0) < 0.2
    assert _informative_fraction(0.0) < 0.2  # <= 0 disables the check too
    assert _informative_fraction(0.75) > 0.45


def test_cat_max_ratio_gives_up_after_ten_redraws_on_a_single_class_image():
    mask = np.full((100, 100), 3, np.uint8)
    rng = np.random.default_rng(0)
    y0, x0, y1, x1 = T.random_crop_box(mask, (40, 40), rng, cat_max_ratio=0.75)
    assert (y1 - y0, x1 - x0) == (40, 40)
    # 1 + 10 draws of (y, x): the generator advanced exactly 22 integer draws
    reference = np.random.default_rng(0)
    for _ in range(22):
        reference.integers(61)
    assert rng.integers(1 << 30) == reference.integers(1 << 30)


def test_pad_bottom_right_uses_given_value():
    image = np.full((3, 4, 3), 9, np.uint8)
    padded = T.pad_bottom_right(image, (5, 6), 0)
    assert padded.shape == (5, 6, 3) and (padded[:3, :4] == 9).all()
    assert (padded[3:] == 0).all() and (padded[:, 4:] == 0).all()
    mask = np.ones((3, 4), np.uint8)
    padded = T.pad_bottom_right(mask, (2, 6), 255)  # taller than asked on one axis: no crop, pad the other
    assert padded.shape == (3, 6) and (padded[:, 4:] == 255).all() and (padded[:, :4] == 1).all()


def test_hflip_mirrors_and_is_contiguous():
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    flipped = T.hflip(array[:, 1:])
    assert flipped.flags.c_contiguous and (flipped == array[:, 1:][:, ::-1]).all()


def test_affine_lut_matches_float_formula_with_truncation():
    values = np.arange(256, dtype=np.float32)
    for alpha, beta in [(1.0, 20.7), (1.0, -31.2), (0.63, 0.0), (1.41, 0.0)]:
        expected = np.clip(values * alpha + beta, 0, 255).astype(np.uint8)
        assert (T._affine_lut(alpha, beta) == expected).all()


def test_photometric_distortion_keeps_dtype_shape_and_input():
    rng = np.random.default_rng(0)
    image = cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (64, 48), interpolation=cv2.INTER_LINEAR)
    original = image.copy()
    outputs = [T.photometric_distortion(image, np.random.default_rng(seed)) for seed in range(20)]
    assert (image == original).all()  # the input is never modified in place
    for out in outputs:
        assert out.dtype == np.uint8 and out.shape == image.shape
    changed = sum(not np.array_equal(out, image) for out in outputs)
    assert changed >= 15  # P(no step fires) = 1/16
    distinct = {out.tobytes() for out in outputs}
    assert len(distinct) >= 15
    again = T.photometric_distortion(image, np.random.default_rng(3))
    assert np.array_equal(again, outputs[3])


def test_photometric_distortion_keeps_grey_pixels_grey():
    # saturation and hue cannot colour a grey pixel; brightness/contrast move it along the grey axis
    grey = np.repeat(np.arange(0, 256, 4, dtype=np.uint8)[None, :, None], 3, axis=2)
    for seed in range(10):
        out = T.photometric_distortion(grey, np.random.default_rng(seed))
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
        assert (np.diff(out[0, :, 0].astype(int)) >= 0).all()  # monotone tables keep the order of values
