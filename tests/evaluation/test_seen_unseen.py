"""Seen / unseen metrics (FreeSeg's zero-shot protocol): semantic on a hand-made confusion matrix, the checks of the
open-vocabulary metadata, and panoptic / instance / semantic on hand-made cases whose metrics follow the
``evaluation_flag`` where a test set's two flags differ (FreeSeg's COCO panoptic set)."""

import json
import math

import numpy as np
import pytest
import torch

from freemask.data.catalog import MetadataCatalog
from freemask.data.errors import DatasetError
from freemask.evaluation import SemSegEvaluator
from freemask.evaluation.seen_unseen import harmonic_mean, mean_of_defined, split_by_flag
from freemask.evaluation.sem_seg import compute_metrics

NAMES = ["a", "b", "c", "d"]
FLAG = [1, 1, 0, 0]  # a, b seen; c, d unseen
# Row = ground truth, column = prediction. a: 3 right, 1 as b; b: 1 right, 1 as a; c: 1 right, 1 as d;
# d: never in the ground truth, predicted once (on a c pixel).
CONF = torch.tensor([[3, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 0, 0]])
# IoU a = 3 / (4 + 4 - 3) = 3/5, b = 1 / (2 + 2 - 1) = 1/3, c = 1 / (2 + 1 - 1) = 1/2, d undefined (no GT).
IOU_SEEN = 100 * (3 / 5 + 1 / 3) / 2  # 140/3
EXPECTED = {
    "mIoU_seen": IOU_SEEN,
    "mIoU_unseen": 50.0,  # c only: d has no ground truth and is left out, as in mIoU
    "hIoU": 2 * IOU_SEEN * 50 / (IOU_SEEN + 50),  # 1400/29
    "pAcc_seen": 100 * 4 / 6,  # (3 + 1) right of the 4 + 2 seen GT pixels
    "pAcc_unseen": 50.0,  # 1 of c's 2 pixels
    # FreeSeg's keys: the IoU sum over classes with GT, divided by the classes with GT or predictions.
    "mIoU-base": IOU_SEEN,  # a and b both have GT
    "pAcc-base": 100 * 4 / 6,
    "mIoU-unbase": 100 * (1 / 2 + 0) / 2,  # d was predicted: it counts, as 0 -> 25
    "pAcc-unbase": 50.0,
    "hIoU-base": 2 * IOU_SEEN * 25 / (IOU_SEEN + 25),  # 1400/43
}


def pixels(conf):
    """(gt, pred) rows of one image whose confusion matrix is ``conf``."""
    pairs = [(g, p) for g in range(len(conf)) for p in range(len(conf)) for _ in range(int(conf[g, p]))]
    return torch.tensor([[g for g, _ in pairs]]), torch.tensor([[p for _, p in pairs]])


def evaluate(evaluator, conf=CONF):
    gt, pred = pixels(conf)
    scores = torch.nn.functional.one_hot(pred, len(NAMES)).permute(2, 0, 1).float()
    evaluator.process([{"file_name": "img.png", "sem_seg": gt}], [{"sem_seg": scores}])
    return evaluator.evaluate()["sem_seg"]


def check(result, expected, tolerance=1e-9):
    for key, value in expected.items():
        if math.isnan(value):
            assert math.isnan(result[key]), key
        else:
            assert result[key] == pytest.approx(value, abs=tolerance), key


@pytest.fixture
def dataset(request):
    name = f"_test_seen_unseen_{request.node.name}"
    MetadataCatalog.get(name).set(stuff_classes=NAMES, ignore_label=255)
    yield name
    MetadataCatalog.remove(name)


def test_hand_computed_seen_unseen_and_freeseg_keys(dataset, tmp_path):
    MetadataCatalog.get(dataset).set(trainable_flag=FLAG, evaluation_set={"base": [0, 1]})
    evaluator = SemSegEvaluator.from_dataset(dataset, str(tmp_path))
    result = evaluate(evaluator)
    assert torch.equal(evaluator.conf_matrix, CONF)
    check(result, EXPECTED)
    assert EXPECTED["hIoU"] == pytest.approx(1400 / 29) and EXPECTED["hIoU-base"] == pytest.approx(1400 / 43)
    # The closed-vocabulary metrics are unchanged and come first; the seen / unseen ones follow.
    plain = compute_metrics(CONF.double(), NAMES)
    assert list(result)[: len(plain)] == list(plain) and list(result)[len(plain) :] == list(EXPECTED)
    check(result, plain)
    saved = json.loads((tmp_path / "sem_seg_results.json").read_text())
    assert saved["hIoU"] == pytest.approx(1400 / 29) and saved["mIoU-unbase"] == pytest.approx(25.0)


def test_without_a_flag_or_with_one_kind_the_results_are_as_before(dataset):
    plain = compute_metrics(CONF.double(), NAMES)
    for flag in (None, [1, 1, 1, 1], [0, 0, 0, 0]):
        MetadataCatalog.remove(dataset)
        MetadataCatalog.get(dataset).set(stuff_classes=NAMES, ignore_label=255)
        if flag is not None:
            MetadataCatalog.get(dataset).set(trainable_flag=flag)
        result = evaluate(SemSegEvaluator.from_dataset(dataset))
        assert list(result) == list(plain), flag
        check(result, plain)


def test_harmonic_mean_is_zero_when_one_side_is_zero_and_nan_without_unseen_ground_truth():
    evaluator = SemSegEvaluator(4, 255, NAMES, trainable_flag=FLAG, evaluation_set={"base": [0, 1]})
    # c's pixels all predicted as d: unseen IoU 0 -> hIoU 0 (not NaN, not an error).
    result = evaluate(evaluator, torch.tensor([[2, 0, 0, 0], [0, 2, 0, 0], [0, 0, 0, 2], [0, 0, 0, 0]]))
    check(result, {"mIoU_seen": 100.0, "mIoU_unseen": 0.0, "hIoU": 0.0, "hIoU-base": 0.0, "pAcc_unseen": 0.0})
    # No unseen pixel in the evaluated images and none predicted: unseen metrics are undefined.
    evaluator.reset()
    result = evaluate(evaluator, torch.tensor([[2, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]))
    check(result, {"mIoU_unseen": math.nan, "hIoU": math.nan, "pAcc_unseen": math.nan, "mIoU-unbase": math.nan})
    assert result["mIoU_seen"] == pytest.approx(100 * (2 / 3 + 1 / 2) / 2)


def test_two_evaluation_sets_each_get_their_keys():
    sets = {"base": [0, 1], "novel_stuff": [3]}
    result = evaluate(SemSegEvaluator(4, 255, NAMES, trainable_flag=FLAG, evaluation_set=sets))
    check(result, EXPECTED)
    # novel_stuff = {d}: d predicted once, no GT -> IoU 0 over 1 class; complement a, b, c all have GT.
    check(result, {"mIoU-novel_stuff": 0.0, "mIoU-unnovel_stuff": 100 * (3 / 5 + 1 / 3 + 1 / 2) / 3})
    check(result, {"hIoU-novel_stuff": 0.0, "pAcc-novel_stuff": math.nan})
    # Without trainable_flag an evaluation_set adds nothing: every open-vocabulary key needs the flag.
    plain = compute_metrics(CONF.double(), NAMES)
    assert list(evaluate(SemSegEvaluator(4, 255, NAMES, evaluation_set=sets))) == list(plain)


def test_bad_metadata_is_one_line_naming_the_dataset(dataset):
    for bad, message in (
        ({"trainable_flag": [1, 0, 1]}, "trainable_flag has 3 entries for 4 classes"),
        ({"trainable_flag": [1, 0, 2, 0]}, "0 \\(unseen\\) or 1 \\(seen\\)"),
        ({"evaluation_set": {"base": [0, 4]}}, "evaluation_set 'base' lists class ids \\[4\\], outside 0..3"),
        ({"evaluation_set": [0, 1]}, "evaluation_set must map a name"),
    ):
        MetadataCatalog.remove(dataset)
        MetadataCatalog.get(dataset).set(stuff_classes=NAMES, ignore_label=255, **bad)
        with pytest.raises(DatasetError, match=f"dataset '{dataset}'.*{message}") as info:
            SemSegEvaluator.from_dataset(dataset)
        assert "\n" not in str(info.value)


def test_helpers():
    assert split_by_flag(None, range(3)) is None
    assert split_by_flag([1, 1, 1], range(3)) is None
    assert split_by_flag([1, 0, 1, 0], [0, 1, 3]) == ([0], [1, 3])  # only the classes asked about
    with pytest.raises(ValueError, match="class 3 is evaluated"):
        split_by_flag([1, 0, 1], [0, 3])
    assert harmonic_mean(50.0, 50.0) == 50.0 and harmonic_mean(0.0, 80.0) == 0.0
    assert harmonic_mean(40.0, 60.0) == pytest.approx(48.0)
    assert math.isnan(harmonic_mean(math.nan, 10.0))
    assert mean_of_defined([1.0, math.nan, 3.0]) == 2.0 and math.isnan(mean_of_defined([math.nan]))


# ------------------------------------------------------------------------------------------------------------------
# Two flags, as FreeSeg's COCO panoptic test set has: the model's trainable_flag and the metrics' evaluation_flag.
# Classes car (thing, dataset id 11), person (thing, 12), sky (stuff, 23), road (stuff, 24).
PAN_IDS = {11: 0, 12: 1, 23: 2, 24: 3}
PAN_THINGS = {11: 0, 12: 1}
PAN_NAMES = ["car", "person", "sky", "road"]
MODEL_FLAG = [1, 1, 0, 1]  # trainable_flag: only sky unseen
METRIC_FLAG = [1, 0, 0, 1]  # evaluation_flag: person and sky unseen


@pytest.fixture
def two_flag_dataset(request):
    name = f"_test_two_flags_{request.node.name}"
    MetadataCatalog.get(name).set(
        stuff_classes=PAN_NAMES,
        thing_classes=["car", "person"],
        stuff_dataset_id_to_contiguous_id=PAN_IDS,
        thing_dataset_id_to_contiguous_id=PAN_THINGS,
        ignore_label=255,
        trainable_flag=MODEL_FLAG,
        evaluation_flag=METRIC_FLAG,
    )
    yield name
    MetadataCatalog.remove(name)


def test_panoptic_seen_unseen_and_harmonic_follow_the_evaluation_flag(two_flag_dataset, tmp_path):
    import cv2

    from freemask.data.panoptic_png import id2rgb
    from freemask.evaluation import COCOPanopticEvaluator

    # One 2 x 4 image. GT: car 1 (2 px), person 2 (2 px), sky 3 (2 px), road 4 (2 px).
    gt = np.array([[1, 1, 2, 2], [3, 3, 4, 4]])
    png = tmp_path / "gt.png"
    cv2.imwrite(str(png), id2rgb(gt)[..., ::-1])
    segments = [{"id": i, "category_id": i - 1, "iscrowd": 0} for i in (1, 2, 3, 4)]
    # Prediction: car exact (IoU 1); person on 1 of its 2 px (IoU 1/2, not > 1/2: FP + FN, PQ 0); sky over its 2 px
    # and one road pixel (IoU 2/3: TP, PQ 2/3); road on its other pixel (IoU 1/2: FP + FN, PQ 0).
    pred = torch.tensor([[1, 1, 2, 0], [3, 3, 3, 4]])
    pred_segments = [{"id": i, "category_id": i - 1, "isthing": i < 3} for i in (1, 2, 3, 4)]
    evaluator = COCOPanopticEvaluator.from_dataset(two_flag_dataset)
    evaluator.process(
        [{"file_name": "img.jpg", "image_id": 1, "pan_seg_file_name": str(png), "segments_info": segments}],
        [{"panoptic_seg": (pred, pred_segments)}],
    )
    result = evaluator.evaluate()["panoptic_seg"]
    fixed_point = 1e-6  # the IoU sums are kept in fixed point (freemask/evaluation/panoptic_quality.py)
    check(result, {"PQ-car": 100.0, "PQ-person": 0.0, "PQ-sky": 200 / 3, "PQ-road": 0.0}, fixed_point)
    # Seen by evaluation_flag: car, road -> (100 + 0) / 2; unseen: person, sky -> (0 + 200/3) / 2.
    seen, unseen = 50.0, 100 / 3
    check(result, {"PQ_seen": seen, "PQ_unseen": unseen, "hPQ": 2 * seen * unseen / (seen + unseen)}, fixed_point)
    assert result["hPQ"] == pytest.approx(40.0)
    assert result["RQ_unseen"] == pytest.approx(50.0)  # person 0, sky 1 (one TP, no FP / FN)


def test_instance_seen_unseen_and_harmonic_follow_the_evaluation_flag(two_flag_dataset, tmp_path):
    import pycocotools.mask as mask_util

    from freemask.evaluation import InstanceSegEvaluator

    car, person = np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8)
    car[:4, :4], person[4:, 4:] = 1, 1
    annotations = []
    for k, (mask, cat) in enumerate(((car, 11), (person, 12))):
        rle = mask_util.encode(np.asfortranarray(mask))
        rle["counts"] = rle["counts"].decode("ascii")
        bbox = mask_util.toBbox(rle).tolist()
        annotations.append(
            {"id": k + 1, "image_id": 1, "category_id": cat, "segmentation": rle, "area": 16.0, "bbox": bbox,
             "iscrowd": 0}
        )  # fmt: skip
    json_file = tmp_path / "instances.json"
    json_file.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "height": 8, "width": 8, "file_name": "img.jpg"}],
                "annotations": annotations,
                "categories": [{"id": 11, "name": "car"}, {"id": 12, "name": "person"}],
            }
        )
    )
    MetadataCatalog.get(two_flag_dataset).set(json_file=str(json_file))
    evaluator = InstanceSegEvaluator.from_dataset(two_flag_dataset)
    # The car found exactly (AP 100), the person missed (AP 0).
    instances = {"pred_masks": torch.from_numpy(car[None].astype(bool)), "scores": torch.tensor([0.9]),
                 "pred_classes": torch.tensor([0])}  # fmt: skip
    evaluator.process([{"image_id": 1, "file_name": "img.jpg"}], [{"instances": instances}])
    result = evaluator.evaluate()["segm"]
    check(result, {"AP-car": 100.0, "AP-person": 0.0})
    # evaluation_flag: car seen, person unseen (trainable_flag would call both seen: no AP_unseen at all).
    check(result, {"AP_seen": 100.0, "AP_unseen": 0.0, "hAP": 0.0})


def test_semantic_seen_unseen_follow_the_evaluation_flag(two_flag_dataset):
    # Reuse the 4-class confusion matrix above (classes renamed): IoU 3/5, 1/3, 1/2 and none (no GT).
    evaluator = SemSegEvaluator.from_dataset(two_flag_dataset)
    result = evaluate(evaluator)
    seen, unseen = 100 * 3 / 5, 100 * (1 / 3 + 1 / 2) / 2  # seen: class 0 (3 has no GT); unseen: 1, 2
    check(result, {"mIoU_seen": seen, "mIoU_unseen": unseen, "hIoU": 2 * seen * unseen / (seen + unseen)})
