"""Seen / unseen semantic metrics (FreeSeg's zero-shot protocol) on a hand-made confusion matrix, and the checks of
the open-vocabulary metadata."""

import json
import math

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


def check(result, expected):
    for key, value in expected.items():
        if math.isnan(value):
            assert math.isnan(result[key]), key
        else:
            assert result[key] == pytest.approx(value, abs=1e-9), key


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
