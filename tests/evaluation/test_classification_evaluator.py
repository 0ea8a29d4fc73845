"""Top-1 / top-5 region-classification accuracy on known predictions."""

import json
import math

import pytest
import torch

from freemask.data import MetadataCatalog
from freemask.evaluation import ClassificationEvaluator

NAMES = ["a", "b", "c", "d", "e", "f"]


def _sample(label, ranking):
    """A sample of class ``label`` whose scores rank the classes in ``ranking`` order (best first)."""
    scores = torch.zeros(len(NAMES))
    for rank, c in enumerate(ranking):
        scores[c] = len(NAMES) - rank
    return {"instances": {"gt_classes": torch.tensor([label])}}, {"classification": scores}


def _evaluate(evaluator, samples):
    evaluator.reset()
    inputs, outputs = zip(*samples)
    evaluator.process(list(inputs), list(outputs))
    return evaluator.evaluate()["classification"]


def test_known_predictions(tmp_path):
    samples = [
        _sample(0, [0, 1, 2, 3, 4, 5]),  # a: top-1
        _sample(0, [1, 2, 3, 4, 0, 5]),  # a: 5th, top-5 only
        _sample(1, [5, 4, 3, 2, 0, 1]),  # b: 6th, missed
        _sample(2, [2, 0, 1, 3, 4, 5]),  # c: top-1 (unseen)
        _sample(5, [0, 5, 1, 2, 3, 4]),  # f: 2nd (unseen)
    ]
    evaluator = ClassificationEvaluator(NAMES, seen=[1, 1, 0, 1, 1, 0], output_dir=str(tmp_path))
    m = _evaluate(evaluator, samples)
    assert m["ACC1"] == pytest.approx(40.0) and m["ACC5"] == pytest.approx(80.0)
    assert m["ACC1-a"] == pytest.approx(50.0) and m["ACC5-a"] == pytest.approx(100.0)
    assert m["ACC1-b"] == 0.0 and m["ACC5-b"] == 0.0 and math.isnan(m["ACC1-d"])
    assert m["mACC1"] == pytest.approx((50 + 0 + 100 + 0) / 4)
    assert m["ACC1_seen"] == pytest.approx(100 / 3) and m["ACC5_seen"] == pytest.approx(200 / 3)
    assert m["ACC1_unseen"] == pytest.approx(50.0) and m["ACC5_unseen"] == pytest.approx(100.0)
    written = json.loads((tmp_path / "classification_results.json").read_text())
    assert written["ACC1"] == pytest.approx(40.0) and written["ACC1-d"] is None
    assert _evaluate(evaluator, samples[:1])["ACC1"] == 100.0  # reset forgets earlier samples


def test_fewer_than_five_classes_and_bad_inputs():
    evaluator = ClassificationEvaluator(["x", "y"])
    inputs = [{"instances": {"gt_classes": torch.tensor([1])}}]
    evaluator.process(inputs, [{"classification": torch.tensor([2.0, 1.0])}])
    m = evaluator.evaluate()["classification"]
    assert m["ACC1"] == 0.0 and m["ACC5"] == 100.0 and "ACC1_seen" not in m
    with pytest.raises(ValueError, match="3 scores and label 1 for the 2 classes"):
        evaluator.process(inputs, [{"classification": torch.zeros(3)}])


def test_from_dataset_metadata():
    MetadataCatalog.get("_cls_eval_all_seen").set(stuff_classes=["x", "y"], trainable_flag=[1, 1])
    assert ClassificationEvaluator.from_dataset("_cls_eval_all_seen").seen is None  # no unseen class: no split
    MetadataCatalog.get("_cls_eval_split").set(stuff_classes=["x", "y"], trainable_flag=[1, 0])
    assert ClassificationEvaluator.from_dataset("_cls_eval_split").seen.tolist() == [True, False]
    with pytest.raises(ValueError, match="no metadata 'stuff_classes'"):
        ClassificationEvaluator.from_dataset("_cls_eval_nothing")
