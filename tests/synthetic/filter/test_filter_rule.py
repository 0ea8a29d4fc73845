"""The FreeMask filtering rule on hand-built loss and label maps."""

import math

import numpy as np
import pytest
import torch

from freemask.synthetic.filter.rule import (
    apply_filter,
    class_thresholds,
    filled_value,
    noisy_pixels,
    quantile_thresholds,
)

IGNORE = 255


def test_thresholds_scale_class_means_and_absent_classes_never_filter():
    thresholds = class_thresholds([0.8, None, 2.0, math.nan], margin=1.25)
    assert thresholds.dtype == torch.float64
    assert thresholds[0].item() == 1.0 and thresholds[2].item() == 2.5
    assert math.isinf(thresholds[1].item()) and math.isinf(thresholds[3].item())


@pytest.mark.parametrize("margin", [0.0, -1.0, math.nan])
def test_thresholds_reject_a_non_positive_margin(margin):
    with pytest.raises(ValueError, match="margin"):
        class_thresholds([1.0], margin)


def test_a_pixel_is_filtered_only_strictly_above_its_class_threshold():
    thresholds = class_thresholds([0.8, 0.4], margin=1.25)  # 1.0 and 0.5, exact in binary
    labels = torch.tensor([[0, 0, 0, 1, 1, 1]])
    loss = torch.tensor([[0.99, 1.0, 1.01, 0.49, 0.5, 0.51]], dtype=torch.float32)
    assert noisy_pixels(loss, labels, thresholds, IGNORE).tolist() == [[False, False, True, False, False, True]]


def test_float32_loss_is_compared_with_the_exact_threshold_not_its_float32_rounding():
    # 1.1 * 0.3 = 0.33000000000000002 rounds UP to the float32 0.33000001: a loss of that float32 value lies above
    # the threshold (filtered) although a float32 comparison would call it equal; the float32 just below does not.
    thresholds = class_thresholds([0.3], margin=1.1)
    at = np.float32(1.1 * 0.3)
    assert float(at) > 1.1 * 0.3
    below = np.nextafter(at, np.float32(0))
    labels = torch.zeros(2, dtype=torch.long)
    loss = torch.tensor([at, below], dtype=torch.float32)
    assert noisy_pixels(loss, labels, thresholds, IGNORE).tolist() == [True, False]


def test_ignored_pixels_and_classes_absent_from_the_real_set_are_never_filtered():
    thresholds = class_thresholds([0.1, None], margin=1.0)
    labels = torch.tensor([IGNORE, IGNORE, 1, 1, 0])
    loss = torch.tensor([0.0, 1e6, 1e6, 0.0, 1e6])
    assert noisy_pixels(loss, labels, thresholds, IGNORE).tolist() == [False, False, False, False, True]


def test_rule_matches_a_per_pixel_loop_on_random_maps():
    rng = np.random.default_rng(0)
    means = [0.3, None, 1.2, 0.05]
    labels = rng.choice([0, 1, 2, 3, IGNORE], size=(2, 9, 7))
    loss = rng.exponential(0.6, size=labels.shape).astype(np.float32)
    got = noisy_pixels(torch.from_numpy(loss), torch.from_numpy(labels), class_thresholds(means, 1.25), IGNORE)
    expected = np.zeros(labels.shape, bool)
    for index in np.ndindex(labels.shape):
        label = labels[index]
        if label != IGNORE and means[label] is not None:
            expected[index] = float(loss[index]) > 1.25 * means[label]
    assert np.array_equal(got.numpy(), expected) and expected.any() and not expected.all()


def test_filled_value_follows_the_mask_encoding():
    assert filled_value(reduce_zero_label=True, ignore_label=IGNORE) == 0
    assert filled_value(reduce_zero_label=False, ignore_label=IGNORE) == IGNORE


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_apply_filter_keeps_dtype_and_untouched_pixels_and_leaves_the_input_alone(dtype):
    raw = np.array([[1, 2], [3, 0]], dtype=dtype)
    before = raw.copy()
    noisy = np.array([[True, False], [False, True]])
    out = apply_filter(raw, noisy, fill=0)
    assert out.dtype == dtype and out.tolist() == [[0, 2], [3, 0]]
    assert np.array_equal(raw, before)
    with pytest.raises(ValueError, match="shape"):
        apply_filter(raw, noisy[:1], fill=0)


# ------------------------------------------------------------------------------------------- the quantile rule
UPPER = np.array([1.0, 2.0, 4.0, math.inf])  # bins: <= 1, (1, 2], (2, 4], > 4


@pytest.mark.parametrize("rate, expected", [(0.05, 4.0), (0.049, math.inf), (0.2, 2.0), (0.5, 1.0), (0.0, math.inf)])
def test_quantile_threshold_is_the_first_bin_edge_with_at_most_the_rate_above(rate, expected):
    counts = np.array([[50, 30, 15, 5]])  # above each bin: 50, 20, 5, 0 of 100
    assert quantile_thresholds(counts, UPPER, rate).tolist() == [expected]


def test_a_one_pixel_class_keeps_its_pixel_and_an_absent_class_keeps_everything():
    counts = np.array([[0, 0, 1, 0], [0, 0, 0, 0], [0, 1, 0, 0]])
    thresholds = quantile_thresholds(counts, UPPER, 0.02)
    assert thresholds.dtype == torch.float64 and thresholds.tolist() == [4.0, math.inf, 2.0]
    labels = torch.tensor([[0, 1, 2, 2]])
    loss = torch.tensor([[4.0, 1e9, 2.0, 2.0001]])  # on the edge: kept; above it: filtered
    assert noisy_pixels(loss, labels, thresholds, IGNORE).tolist() == [[False, False, False, True]]


@pytest.mark.parametrize("rate", [-0.1, 1.0, math.nan])
def test_quantile_rejects_a_rate_outside_zero_one(rate):
    with pytest.raises(ValueError, match="clean rate"):
        quantile_thresholds(np.array([[1, 1, 1, 1]]), UPPER, rate)


def test_kept_pixels_are_never_filtered():
    thresholds = class_thresholds([0.8], margin=1.25)
    labels, loss = torch.zeros(1, 3, dtype=torch.long), torch.tensor([[5.0, 5.0, 0.1]])
    keep = torch.tensor([[True, False, False]])
    assert noisy_pixels(loss, labels, thresholds, IGNORE, keep).tolist() == [[False, True, False]]
