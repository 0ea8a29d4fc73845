"""Per-image records, filter_stats.json and the output folder's bookkeeping."""

import json
import math

import cv2
import numpy as np
import pytest

from freemask.synthetic.filter.outputs import (
    OutputStateError,
    RecordLog,
    check_state,
    image_record,
    log_records,
    read_state,
    record_from_files,
    write_png,
    write_state,
)
from freemask.synthetic.filter.rule import apply_filter
from freemask.synthetic.filter.stats import StatsTotals

IGNORE = 255


def test_record_counts_labelled_and_filtered_pixels_per_class():
    labels = np.array([[0, 0, 1], [2, IGNORE, 1]])
    noisy = np.array([[True, False, True], [False, True, False]])  # the ignored pixel is not counted as filtered
    record = image_record("a.png", labels, noisy, num_classes=4, ignore_label=IGNORE)
    assert record == {"file": "a.png", "labelled": {"0": 2, "1": 2, "2": 1}, "filtered": {"0": 1, "1": 1}}


@pytest.mark.parametrize("reduce_zero, dtype", [(True, np.uint8), (False, np.uint8), (False, np.uint16)])
def test_record_recomputed_from_the_written_files_equals_the_one_logged(tmp_path, reduce_zero, dtype):
    rng = np.random.default_rng(0)
    if reduce_zero:
        raw = rng.integers(0, 4, (12, 9)).astype(dtype)  # 0 = unlabeled
        labels = raw.astype(np.int64) - 1
        labels[raw == 0] = IGNORE
        fill = 0
    else:
        raw = rng.choice([0, 1, 2, IGNORE], size=(12, 9)).astype(dtype)
        labels, fill = raw.astype(np.int64), IGNORE
    noisy = (rng.random(raw.shape) < 0.3) & (labels != IGNORE)
    write_png(str(tmp_path / "raw.png"), raw)
    write_png(str(tmp_path / "out.png"), apply_filter(raw, noisy, fill))
    assert cv2.imread(str(tmp_path / "out.png"), cv2.IMREAD_UNCHANGED).dtype == dtype
    logged = image_record("out.png", labels, noisy, 3, IGNORE)
    recomputed = record_from_files(
        "out.png", str(tmp_path / "raw.png"), str(tmp_path / "out.png"), reduce_zero, 3, IGNORE
    )
    assert recomputed == logged and logged["filtered"]


def test_log_survives_a_line_cut_by_a_kill(tmp_path):
    log = RecordLog(str(tmp_path), rank=0)
    log.append({"file": "a.png", "labelled": {"0": 1}, "filtered": {}})
    log.close()
    with open(log.path, "a") as f:
        f.write('{"file": "b.png", "label')  # killed mid-line
    log = RecordLog(str(tmp_path), rank=0)  # the next run appends after the fragment
    log.append({"file": "c.png", "labelled": {}, "filtered": {}})
    log.close()
    RecordLog(str(tmp_path), rank=1).close()  # an empty log of another rank
    assert [r["file"] for r in log_records(str(tmp_path))] == ["c.png", "a.png"]  # the last written first


def stats_of(records, names):
    totals = StatsTotals(names, 3)
    totals.add_all(records)
    return totals.summary(["x", "y", "z"], [0.5, math.inf, 1.0], 1.25, "/data/class_loss.json", "/data")


def test_stats_sum_records_whatever_their_order_and_handle_empty_classes():
    records = [
        {"file": "b.png", "labelled": {"0": 6, "1": 2}, "filtered": {"0": 3}},
        {"file": "a.png", "labelled": {"0": 2}, "filtered": {}},
        {"file": "c.png", "labelled": {}, "filtered": {}},
    ]
    stats = stats_of(records, ["a.png", "b.png", "c.png"])
    assert stats["overall"] == {"pixels": 10, "filtered": 3, "fraction": 0.3}
    assert [c["threshold"] for c in stats["classes"]] == [0.5, None, 1.0]
    assert [(c["pixels"], c["filtered"]) for c in stats["classes"]] == [(8, 3), (2, 0), (0, 0)]
    assert stats["classes"][2]["fraction"] == 0.0
    assert stats["images"] == 3 and stats["class_loss"] == "class_loss.json"
    assert stats == stats_of(records[::-1], ["c.png", "b.png", "a.png"])
    json.dumps(stats, allow_nan=False)


def test_state_mismatch_names_the_setting_and_the_fix(tmp_path):
    write_state(str(tmp_path), {"tolerance_margin": 1.25, "batch_size": 8})
    previous = read_state(str(tmp_path))
    check_state(str(tmp_path), previous, {"tolerance_margin": 1.25, "batch_size": 8, "new_key": 1})
    check_state(str(tmp_path), None, {"tolerance_margin": 2.0})
    with pytest.raises(OutputStateError, match=r"tolerance_margin: 1.25 -> 1.5.*--overwrite"):
        check_state(str(tmp_path), previous, {"tolerance_margin": 1.5, "batch_size": 8})
