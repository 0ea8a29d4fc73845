"""Pixel precision and recall of filtering against planted defects, on hand-built masks."""

import math

import cv2
import numpy as np
import pytest

from freemask.toy.defect_score import (
    DefectCounts,
    DefectScoreError,
    count_defect_pixels,
    near_boundary,
    score_defect_folders,
)

# Raw ADE20K-style masks: 0 = unlabelled. Column 0 is unlabelled in the original mask.
ORIGINAL = np.array([[0, 1, 1, 2], [0, 1, 2, 2]], np.uint8)
# Filtered: (0,2) and (1,3) set to 0; (1,0) was already 0.
FILTERED = np.array([[0, 1, 0, 2], [0, 1, 2, 0]], np.uint8)
# Defects at (0,2), (1,1), and at (0,0), an unlabelled pixel that must not count.
DEFECTS = np.array([[1, 0, 1, 0], [0, 1, 0, 0]], np.uint8)


def test_counts_only_pixels_labelled_in_the_original_mask():
    counts = count_defect_pixels(ORIGINAL, FILTERED, DEFECTS, ignore_label=0)
    # In this 2x4 mask every labelled pixel is within 2 px of another value; (1,3) is the clean filtered pixel.
    assert counts == DefectCounts(
        labelled=6, filtered=2, defects=2, hits=1, near_boundary=6, clean_filtered_near_boundary=1
    )
    assert counts.precision == pytest.approx(1 / 2)
    assert counts.recall == pytest.approx(1 / 2)
    assert counts.f1 == pytest.approx(1 / 2)
    assert counts.base_rate == pytest.approx(2 / 6)
    assert counts.filtered_fraction == pytest.approx(2 / 6)


def test_prepared_masks_use_255_as_ignore():
    def prepared(mask):
        return np.where(mask == 0, 255, mask - 1).astype(np.uint8)

    counts = count_defect_pixels(prepared(ORIGINAL), prepared(FILTERED), DEFECTS, ignore_label=255)
    assert counts == count_defect_pixels(ORIGINAL, FILTERED, DEFECTS, ignore_label=0)


def test_perfect_filter_and_empty_cases():
    perfect = np.where(DEFECTS.astype(bool), 0, ORIGINAL).astype(np.uint8)
    counts = count_defect_pixels(ORIGINAL, perfect, DEFECTS, ignore_label=0)
    assert (counts.precision, counts.recall, counts.f1) == (1.0, 1.0, 1.0)
    nothing = count_defect_pixels(ORIGINAL, ORIGINAL, np.zeros_like(DEFECTS), ignore_label=0)
    assert nothing.filtered == nothing.defects == 0
    assert math.isnan(nothing.precision) and math.isnan(nothing.recall) and math.isnan(nothing.f1)


def test_counts_add_over_images():
    one = count_defect_pixels(ORIGINAL, FILTERED, DEFECTS, ignore_label=0)
    two = one + one
    assert two == DefectCounts(12, 4, 4, 2, 12, 2)
    assert two.precision == one.precision


def test_clean_filtered_pixels_are_located_against_the_boundary():
    original = np.ones((12, 12), np.uint8)
    original[:, 6:] = 2  # one vertical boundary between columns 5 and 6
    assert near_boundary(original)[0].tolist() == [False] * 4 + [True] * 4 + [False] * 4  # 2 px either side
    filtered = original.copy()
    filtered[0, 5] = filtered[0, 0] = filtered[11, 11] = 0  # clean pixels: one near the boundary, two far from it
    filtered[5, 6] = 0  # a defect near the boundary: not a false positive, not counted
    defects = np.zeros_like(original)
    defects[5, 6] = 1
    counts = count_defect_pixels(original, filtered, defects, ignore_label=0)
    assert (counts.filtered, counts.hits, counts.clean_filtered_near_boundary, counts.near_boundary) == (4, 1, 1, 48)
    assert counts.clean_filtered_boundary_share == pytest.approx(1 / 3)
    assert counts.boundary_share == pytest.approx(48 / 144)
    assert math.isnan(count_defect_pixels(original, original, defects, ignore_label=0).clean_filtered_boundary_share)


def test_shape_mismatch_is_an_error():
    with pytest.raises(DefectScoreError, match="shapes differ"):
        count_defect_pixels(ORIGINAL, FILTERED[:, :3], DEFECTS, ignore_label=0)


def test_folders_are_scored_by_file_name(tmp_path):
    folders = {kind: tmp_path / kind for kind in ("annotations", "annotations_filtered", "defects")}
    for folder in folders.values():
        folder.mkdir()
    for name, defects in (("a_seed_42.png", DEFECTS), ("b_seed_42.png", np.zeros_like(DEFECTS))):
        cv2.imwrite(str(folders["annotations"] / name), ORIGINAL)
        cv2.imwrite(str(folders["annotations_filtered"] / name), FILTERED)
        cv2.imwrite(str(folders["defects"] / name), defects)
    counts = score_defect_folders(*(str(f) for f in folders.values()), ignore_label=0)
    assert (counts.labelled, counts.filtered, counts.defects, counts.hits) == (12, 4, 2, 1)
    (folders["annotations_filtered"] / "b_seed_42.png").unlink()
    with pytest.raises(DefectScoreError, match="b_seed_42.png"):
        score_defect_folders(*(str(f) for f in folders.values()), ignore_label=0)
