"""Pixel precision and recall of filtering against planted defects, on hand-built masks."""

import math

import cv2
import numpy as np
import pytest

from freemask.synthetic.defect_score import (
    DefectCounts,
    DefectScoreError,
    count_defect_pixels,
    score_defect_folders,
)

# Raw ADE20K-style masks: 0 = unlabelled. Column 0 is unlabelled in the original mask.
ORIGINAL = np.array([[0, 1, 1, 2], [0, 1, 2, 2]], np.uint8)
# Filtered: (0,2) and (1,3) set to 0; (1,0) was already 0.
FILTERED = np.array([[0, 1, 0, 2], [0, 1, 2, 0]], np.uint8)
# Defects at (0,2), (1,1), and at (0,0), an unlabelled pixel that must not count.
DEFECTS = np.array([[1, 0, 1, 0], [0, 1, 0, 0]], np.uint8)


def test_counts_only_pixels_labelled_in_the_original_mask():
    counts = count_defect_pixels(ORIGINAL, FILTERED, DEFECTS, ignore_value=0)
    assert counts == DefectCounts(labelled=6, filtered=2, defects=2, hits=1)
    assert counts.precision == pytest.approx(1 / 2)
    assert counts.recall == pytest.approx(1 / 2)
    assert counts.f1 == pytest.approx(1 / 2)
    assert counts.base_rate == pytest.approx(2 / 6)
    assert counts.filtered_fraction == pytest.approx(2 / 6)


def test_prepared_masks_use_255_as_ignore():
    def prepared(mask):
        return np.where(mask == 0, 255, mask - 1).astype(np.uint8)

    counts = count_defect_pixels(prepared(ORIGINAL), prepared(FILTERED), DEFECTS, ignore_value=255)
    assert counts == DefectCounts(labelled=6, filtered=2, defects=2, hits=1)


def test_perfect_filter_and_empty_cases():
    perfect = np.where(DEFECTS.astype(bool), 0, ORIGINAL).astype(np.uint8)
    counts = count_defect_pixels(ORIGINAL, perfect, DEFECTS, ignore_value=0)
    assert (counts.precision, counts.recall, counts.f1) == (1.0, 1.0, 1.0)
    nothing = count_defect_pixels(ORIGINAL, ORIGINAL, np.zeros_like(DEFECTS), ignore_value=0)
    assert nothing.filtered == nothing.defects == 0
    assert math.isnan(nothing.precision) and math.isnan(nothing.recall) and math.isnan(nothing.f1)


def test_counts_add_over_images():
    one = count_defect_pixels(ORIGINAL, FILTERED, DEFECTS, ignore_value=0)
    two = one + one
    assert two == DefectCounts(12, 4, 4, 2)
    assert two.precision == one.precision


def test_shape_mismatch_is_an_error():
    with pytest.raises(DefectScoreError, match="shapes differ"):
        count_defect_pixels(ORIGINAL, FILTERED[:, :3], DEFECTS, ignore_value=0)


def test_folders_are_scored_by_file_name(tmp_path):
    folders = {kind: tmp_path / kind for kind in ("annotations", "annotations_filtered", "defects")}
    for folder in folders.values():
        folder.mkdir()
    for name, defects in (("a_seed_42.png", DEFECTS), ("b_seed_42.png", np.zeros_like(DEFECTS))):
        cv2.imwrite(str(folders["annotations"] / name), ORIGINAL)
        cv2.imwrite(str(folders["annotations_filtered"] / name), FILTERED)
        cv2.imwrite(str(folders["defects"] / name), defects)
    counts = score_defect_folders(*(str(f) for f in folders.values()), ignore_value=0)
    assert counts == DefectCounts(labelled=12, filtered=4, defects=2, hits=1)
    (folders["annotations_filtered"] / "b_seed_42.png").unlink()
    with pytest.raises(DefectScoreError, match="b_seed_42.png"):
        score_defect_folders(*(str(f) for f in folders.values()), ignore_value=0)
