"""The readers of instance annotations (object_records.py): each bad segmentation is a RecordError of its kind naming
the annotation file; good ones decode as pycocotools decodes them; compressed RLEs are parsed exactly."""

import numpy as np
import pycocotools.mask as mask_util
import pytest

from freemask.data.errors import RecordError
from freemask.data.object_records import _compressed_rle_counts, annotation_rle


def test_compressed_rle_run_lengths_match_pycocotools():
    rng = np.random.default_rng(0)
    for _ in range(200):
        height, width = rng.integers(1, 50, 2)
        mask = (rng.random((height, width)) < rng.random()).astype(np.uint8)
        counts = mask_util.encode(np.asfortranarray(mask))["counts"]
        runs = _compressed_rle_counts(counts)
        decoded = np.repeat(np.arange(len(runs)) % 2, runs).reshape(width, height).T
        assert np.array_equal(decoded, mask)
    assert _compressed_rle_counts("abc") is None and _compressed_rle_counts("0") == [0]


@pytest.mark.parametrize(
    "segmentation, kind",
    [([], "empty_annotation"), ([[]], "empty_annotation"), ([[0, 0, 4, 4, 8, 8]], "empty_annotation"),
     ([[0, 0, 4, 0, 4]], "bad_annotation"), ([["a", 0, 4, 0, 4, 4]], "bad_annotation"), ("x", "bad_annotation"),
     ({"counts": "P1"}, "bad_annotation"), ({"size": [8, 8], "counts": ""}, "bad_annotation"),
     ({"size": [8, 8], "counts": [64]}, "empty_annotation"), ({"size": [4, 8], "counts": [32]}, "size_mismatch")],
)  # fmt: skip
def test_each_bad_segmentation_is_a_record_error_of_its_kind(segmentation, kind):
    record = {"file_name": "x.jpg", "annotation_file": "a.json",
              "annotations": [{"id": 7, "segmentation": segmentation, "category_id": 0}]}  # fmt: skip
    with pytest.raises(RecordError) as error:
        annotation_rle(record, 0, (8, 8))
    assert error.value.kind == kind and error.value.path == "a.json"
    assert str(error.value).startswith("a.json: annotation 7 of image x.jpg: ") and "\n" not in str(error.value)


def test_good_segmentations_decode_as_pycocotools_does():
    polygon = [[1, 1, 6, 1, 6, 5, 1, 5]]
    mask = np.zeros((8, 8), np.uint8)
    mask[2:5, 3:7] = 1
    rle = mask_util.encode(np.asfortranarray(mask))
    uncompressed = {"size": [8, 8], "counts": [10, 6, 48]}
    record = {"file_name": "x.jpg", "annotations": [{"segmentation": s} for s in (polygon, rle, uncompressed)]}
    expected = mask_util.decode(mask_util.merge(mask_util.frPyObjects(polygon, 8, 8)))
    assert np.array_equal(mask_util.decode(annotation_rle(record, 0, (8, 8))), expected)
    assert np.array_equal(mask_util.decode(annotation_rle(record, 1, (8, 8))), mask)
    assert mask_util.area(annotation_rle(record, 2, (8, 8))) == 6
