"""PQ / SQ / RQ against hand-computed cases (panopticapi's rules), including where torchmetrics disagrees.

Scenes are single rows of pixels so every area can be counted by eye. Categories: things car (1), person (2);
stuff sky (3), road (4). Values are in percent.
"""

import math

import numpy as np
import pytest

from freemask.data.panoptic_png import id2rgb, rgb2id
from freemask.evaluation.panoptic_quality import (
    IOU_SCALE,
    PQStat,
    pq_metrics,
    pq_stat_single_image,
)

CATEGORIES = [
    {"id": 1, "name": "car", "isthing": 1},
    {"id": 2, "name": "person", "isthing": 1},
    {"id": 3, "name": "sky", "isthing": 0},
    {"id": 4, "name": "road", "isthing": 0},
]


def seg(segment_id, category_id, iscrowd=0):
    return {"id": segment_id, "category_id": category_id, "iscrowd": iscrowd}


def stat(gt_row, gt_segments, pred_row, pred_segments):
    return pq_stat_single_image(np.array([gt_row]), gt_segments, np.array([pred_row]), pred_segments)


def metrics(*images):
    total = PQStat()
    for image in images:
        total += stat(*image)
    return pq_metrics(total, CATEGORIES)


def check(result, expected):
    for key, value in expected.items():
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(result[key]), key
        else:
            assert result[key] == pytest.approx(value, abs=1e-7), key


def test_rgb_encoding_round_trip():
    rgb = np.array([[[1, 2, 3], [0, 0, 0], [255, 255, 255]]], dtype=np.uint8)
    ids = rgb2id(rgb)
    assert ids.tolist() == [[1 + 2 * 256 + 3 * 65536, 0, 256**3 - 1]]  # 197121, void, the largest id
    assert np.array_equal(id2rgb(ids), rgb)
    with pytest.raises(ValueError, match="0..16777215"):
        id2rgb(np.array([[1 << 24]]))


def test_perfect_match():
    image = ([5, 5, 9, 9], [seg(5, 1), seg(9, 3)], [7, 7, 8, 8], [seg(7, 1), seg(8, 3)])
    s = stat(*image)
    assert (s[1].tp, s[1].fp, s[1].fn, s[1].iou_fixed) == (1, 0, 0, IOU_SCALE)
    # car and sky: IoU 1, TP 1 -> 100; person and road have no TP/FP/FN: NaN and left out of the means.
    check(
        metrics(image),
        {
            "PQ": 100.0,
            "SQ": 100.0,
            "RQ": 100.0,
            "PQ_th": 100.0,
            "PQ_st": 100.0,
            "PQ-car": 100.0,
            "PQ-person": math.nan,
            "PQ-road": math.nan,
        },
    )


def test_iou_exactly_half_is_not_a_match():
    # GT car = pixels 0-3 (4); predicted car = pixels 0-1 (2): intersection 2, union 2 + 4 - 2 = 4, IoU = 0.5,
    # not > 0.5 -> car: FN 1 (the GT) and FP 1 (the prediction, none of it on void/crowd). Sky matches, IoU 1.
    # car: PQ = 0 / (0 + 1/2 + 1/2) = 0, SQ = 0 (no TP), RQ = 0. All = (0 + 100) / 2 = 50, things 0, stuff 100.
    image = ([5, 5, 5, 5, 9, 9], [seg(5, 1), seg(9, 3)], [7, 7, 0, 0, 8, 8], [seg(7, 1), seg(8, 3)])
    s = stat(*image)
    assert (s[1].tp, s[1].fp, s[1].fn) == (0, 1, 1)
    check(
        metrics(image),
        {
            "PQ": 50.0,
            "SQ": 50.0,
            "RQ": 50.0,
            "PQ_th": 0.0,
            "SQ_th": 0.0,
            "RQ_th": 0.0,
            "PQ_st": 100.0,
            "PQ-car": 0.0,
            "SQ-car": 0.0,
        },
    )
    # One more predicted pixel: intersection 3, union 3 + 4 - 3 = 4, IoU 0.75 > 0.5 -> matched, car PQ 75.
    image = ([5, 5, 5, 5, 9, 9], [seg(5, 1), seg(9, 3)], [7, 7, 7, 0, 8, 8], [seg(7, 1), seg(8, 3)])
    check(metrics(image), {"PQ-car": 75.0, "SQ-car": 75.0, "RQ-car": 100.0, "PQ": 87.5})


def test_prediction_on_void_is_left_out_of_the_union():
    # GT: void on pixels 0-1, car on 2-5 (4). Predicted car on 0-4 (5): intersection 3 (pixels 2-4), on void 2.
    # union = 5 + 4 - 3 - 2 = 4 -> IoU 3/4 > 0.5: matched (without the void rule: 3/6 = 0.5, not matched).
    # Pixel 5 (GT car, predicted void) stays in the union. car: PQ = SQ = 75, RQ = 100.
    image = ([0, 0, 5, 5, 5, 5], [seg(5, 1)], [7, 7, 7, 7, 7, 0], [seg(7, 1)])
    s = stat(*image)
    assert (s[1].tp, s[1].fp, s[1].fn) == (1, 0, 0)
    assert s[1].iou_fixed == 3 * IOU_SCALE // 4
    check(metrics(image), {"PQ": 75.0, "SQ": 75.0, "RQ": 100.0, "PQ_th": 75.0, "PQ_st": math.nan})


def test_torchmetrics_difference_gt_left_void_by_the_prediction():
    # torchmetrics (Lightning-AI/torchmetrics, src/torchmetrics/functional/detection/_panoptic_quality_common.py,
    # _calculate_iou and _filter_false_negatives) also removes from the union the GT pixels the prediction left void,
    # (a), and drops an FN whose GT segment is more than half predicted void, (b). panopticapi does neither.
    # (a) GT car 0-3, predicted car 0-2, pixel 3 void: IoU = 3 / (3 + 4 - 3) = 0.75 (torchmetrics: 3/3 = 1).
    image_a = ([5, 5, 5, 5], [seg(5, 1)], [7, 7, 7, 0], [seg(7, 1)])
    check(metrics(image_a), {"PQ": 75.0})
    # (b) Two GT cars (0-1, 2-3) + sky (4-5); the prediction finds car 0-1, leaves car 2-3 void, finds the sky.
    # car: TP 1 (IoU 1), FN 1 -> PQ = 1 / (1 + 1/2) = 2/3, SQ 1, RQ 2/3; sky 1. All PQ = (2/3 + 1) / 2 = 5/6.
    # torchmetrics drops the FN (car 2-3 is entirely predicted void) and reports 100.
    image_b = ([5, 5, 6, 6, 9, 9], [seg(5, 1), seg(6, 1), seg(9, 3)], [7, 7, 0, 0, 8, 8], [seg(7, 1), seg(8, 3)])
    check(metrics(image_b), {"PQ-car": 200 / 3, "SQ-car": 100.0, "RQ-car": 200 / 3, "PQ": 250 / 3, "RQ": 250 / 3})


def test_crowd_absorbs_unmatched_predictions_of_its_category():
    # GT: crowd car on 0-3 (never matched, never an FN), sky on 4-7. Predicted car on 0-2 lies wholly on the
    # crowd (3/3 > 1/2): not an FP. car has TP + FP + FN = 0 -> NaN, left out. Sky IoU 1 -> All = stuff = 100.
    gt = ([5, 5, 5, 5, 9, 9, 9, 9], [seg(5, 1, iscrowd=1), seg(9, 3)])
    image = (*gt, [7, 7, 7, 0, 8, 8, 8, 8], [seg(7, 1), seg(8, 3)])
    s = stat(*image)
    assert (s[1].tp, s[1].fp, s[1].fn) == (0, 0, 0)
    check(metrics(image), {"PQ": 100.0, "PQ_th": math.nan, "PQ_st": 100.0, "PQ-car": math.nan})
    # A person predicted on the car crowd (pixel 2) is an FP: a crowd absorbs only its own category.
    # person PQ 0 -> things 0, All = (0 + 100) / 2 = 50.
    image = (*gt, [7, 7, 6, 0, 8, 8, 8, 8], [seg(7, 1), seg(6, 2), seg(8, 3)])
    check(metrics(image), {"PQ-person": 0.0, "PQ_th": 0.0, "PQ": 50.0, "PQ-car": math.nan})


def test_void_and_crowd_overlap_add_up_and_half_is_not_enough():
    # GT: void 0, crowd car 1, sky 2-4. Predicted car on 0-2 (3): 1 on void + 1 on crowd = 2, 2/3 > 1/2 -> ignored.
    # Predicted sky on 3-4: intersection 2, union 2 + 3 - 2 = 3, IoU 2/3 -> matched. All = sky = 66.67.
    image = ([0, 5, 9, 9, 9], [seg(5, 1, iscrowd=1), seg(9, 3)], [7, 7, 7, 8, 8], [seg(7, 1), seg(8, 3)])
    check(metrics(image), {"PQ": 200 / 3, "SQ": 200 / 3, "RQ": 100.0, "PQ-car": math.nan})
    # Predicted car on 0-3 (4): void 1 + crowd 1 = 2, exactly 1/2, not > 1/2 -> an FP (car PQ 0).
    # Sky on 4 only: intersection 1, union 1 + 3 - 1 = 3, IoU 1/3 -> FP + FN. All = (0 + 0) / 2 = 0.
    image = ([0, 5, 9, 9, 9], [seg(5, 1, iscrowd=1), seg(9, 3)], [7, 7, 7, 7, 8], [seg(7, 1), seg(8, 3)])
    s = stat(*image)
    assert (s[1].fp, s[3].fp, s[3].fn) == (1, 1, 1)
    check(metrics(image), {"PQ": 0.0, "PQ-car": 0.0, "PQ-sky": 0.0})


def test_merged_stuff_is_one_segment():
    # GT sky is one segment in two pieces (0-3 and 6-7, area 6) around a car (4-5).
    gt = ([9, 9, 9, 9, 5, 5, 9, 9], [seg(9, 3), seg(5, 1)])
    # Prediction with the sky merged into one segment: one TP of IoU 1 (not two partial matches). PQ 100.
    check(metrics((*gt, [8, 8, 8, 8, 7, 7, 8, 8], [seg(8, 3), seg(7, 1)])), {"PQ": 100.0, "PQ-sky": 100.0})
    # Sky split into two predicted segments: 0-3 has IoU 4/6 (matched), 6-7 has IoU 2/6 (an FP: only one
    # prediction can match a GT segment at IoU > 0.5). sky: PQ = (2/3) / (1 + 1/2) = 4/9, SQ 2/3, RQ 2/3.
    # All = (100 + 44.44) / 2 = 72.22.
    split = (*gt, [8, 8, 8, 8, 7, 7, 6, 6], [seg(8, 3), seg(7, 1), seg(6, 3)])
    check(metrics(split), {"PQ-sky": 400 / 9, "SQ-sky": 200 / 3, "RQ-sky": 200 / 3, "PQ": (100 + 400 / 9) / 2})


def test_class_average_skips_empty_classes_and_splits_things_and_stuff():
    # car: GT 0-3, predicted 0-2 -> IoU 3/4, TP.  sky: GT 4-7 = prediction, IoU 1.
    # road: GT 8-9, predicted 8 -> IoU 1/2, FP + FN -> 0.  person: absent everywhere -> NaN, left out.
    # All: PQ = SQ = (0.75 + 1 + 0) / 3 = 58.33, RQ = (1 + 1 + 0) / 3 = 66.67 (divided by 3 classes, not 4).
    # Things (car): PQ = SQ = 75, RQ = 100.  Stuff (sky, road): PQ = SQ = RQ = (1 + 0) / 2 = 50.
    image = (
        [5, 5, 5, 5, 9, 9, 9, 9, 10, 10],
        [seg(5, 1), seg(9, 3), seg(10, 4)],
        [7, 7, 7, 0, 8, 8, 8, 8, 6, 0],
        [seg(7, 1), seg(8, 3), seg(6, 4)],
    )
    result = metrics(image)
    check(
        result,
        {
            "PQ": 175 / 3,
            "SQ": 175 / 3,
            "RQ": 200 / 3,
            "PQ_th": 75.0,
            "SQ_th": 75.0,
            "RQ_th": 100.0,
            "PQ_st": 50.0,
            "SQ_st": 50.0,
            "RQ_st": 50.0,
            "PQ-person": math.nan,
            "PQ-road": 0.0,
        },
    )
    assert list(result)[:9] == ["PQ", "SQ", "RQ", "PQ_th", "SQ_th", "RQ_th", "PQ_st", "SQ_st", "RQ_st"]


def test_seen_and_unseen_groups_average_like_the_others():
    # The scene above: car 75 / 75 / 100, sky 100, road 0, person absent (no TP, FP or FN).
    # Seen car + road: PQ = SQ = (75 + 0) / 2, RQ = (100 + 0) / 2. Unseen person + sky: person is left out, as in
    # PQ (panopticapi's averaging), so 100 — FreeSeg, averaging panopticapi's per_class with person as 0, says 50.
    image = (
        [5, 5, 5, 5, 9, 9, 9, 9, 10, 10],
        [seg(5, 1), seg(9, 3), seg(10, 4)],
        [7, 7, 7, 0, 8, 8, 8, 8, 6, 0],
        [seg(7, 1), seg(8, 3), seg(6, 4)],
    )
    subsets = {"_seen": [1, 4], "_unseen": [2, 3]}
    result = pq_metrics(stat(*image), CATEGORIES, subsets=subsets)
    expected = {"PQ_seen": 37.5, "SQ_seen": 37.5, "RQ_seen": 50.0, "PQ_unseen": 100.0, "SQ_unseen": 100.0}
    check(result, {**expected, "RQ_unseen": 100.0, "PQ": 175 / 3})
    assert list(result)[9:15] == ["PQ_seen", "SQ_seen", "RQ_seen", "PQ_unseen", "SQ_unseen", "RQ_unseen"]
    assert list(pq_metrics(stat(*image), CATEGORIES)) == [k for k in result if not k.endswith("seen")]
    # A group none of whose classes occurs is undefined; an id outside the categories is refused.
    check(pq_metrics(stat(*image), CATEGORIES, subsets={"_unseen": [2]}), {"PQ_unseen": math.nan})
    with pytest.raises(ValueError, match="category ids \\[7\\]"):
        pq_metrics(stat(*image), CATEGORIES, subsets={"_seen": [1, 7]})


def test_statistics_add_over_images():
    perfect = ([5, 5, 9, 9], [seg(5, 1), seg(9, 3)], [7, 7, 8, 8], [seg(7, 1), seg(8, 3)])
    half = ([5, 5, 5, 5, 9, 9], [seg(5, 1), seg(9, 3)], [7, 7, 0, 0, 8, 8], [seg(7, 1), seg(8, 3)])
    # car: TP 1 (IoU 1) + FP 1 + FN 1 -> PQ = 1 / (1 + 1) = 50, SQ 100, RQ 50; sky: TP 2 -> 100. All PQ 75.
    # (Not the mean of the per-image PQs, which would weight the second image's car as much as the first's.)
    check(metrics(perfect, half), {"PQ-car": 50.0, "SQ-car": 100.0, "RQ-car": 50.0, "PQ": 75.0, "SQ": 100.0})
    assert stat(*perfect) + stat(*half) == stat(*half) + stat(*perfect)

    # The same two images side by side (ids of the second shifted) give the same statistics as one image.
    shift = lambda row: [v + 100 if v else 0 for v in row]  # noqa: E731
    moved = lambda segs: [{**s, "id": s["id"] + 100} for s in segs]  # noqa: E731
    side_by_side = (
        perfect[0] + shift(half[0]),
        perfect[1] + moved(half[1]),
        perfect[2] + shift(half[2]),
        perfect[3] + moved(half[3]),
    )
    assert stat(*side_by_side) == stat(*perfect) + stat(*half)


def test_random_scenes_merge_exactly_in_any_order():
    rng = np.random.default_rng(0)
    stats = []
    for _ in range(20):
        gt = rng.integers(0, 5, size=(6, 7))
        pred = rng.integers(0, 5, size=(6, 7))
        gt_segs = [seg(i, int(rng.integers(1, 5)), iscrowd=int(rng.random() < 0.2)) for i in range(1, 5)]
        pred_segs = [seg(i, int(rng.integers(1, 5))) for i in np.unique(pred) if i]
        stats.append(pq_stat_single_image(gt, gt_segs, pred, pred_segs))
    forward, backward = PQStat(), PQStat()
    for s in stats:
        forward += s
    for s in reversed(stats):
        backward += s
    assert forward == backward
    a, b = pq_metrics(forward, CATEGORIES), pq_metrics(backward, CATEGORIES)
    assert list(a) == list(b)
    assert all(a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])) for k in a)
    assert sum(s.tp + s.fp + s.fn for s in forward.categories.values()) > 0


def test_inconsistent_maps_raise():
    with pytest.raises(ValueError, match=r"predicted segment ids \[8\] are in the map but not in segments_info"):
        stat([5, 5], [seg(5, 1)], [7, 8], [seg(7, 1)])
    with pytest.raises(ValueError, match=r"predicted segment ids \[8\] are in segments_info but have no pixel"):
        stat([5, 5], [seg(5, 1)], [7, 7], [seg(7, 1), seg(8, 1)])
    with pytest.raises(ValueError, match=r"ground-truth segment ids \[6\]"):
        stat([5, 6], [seg(5, 1)], [7, 7], [seg(7, 1)])
    with pytest.raises(ValueError, match="shape"):
        pq_stat_single_image(np.zeros((2, 2)), [], np.zeros((2, 3)), [])
