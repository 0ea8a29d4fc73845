"""freemask.evaluation.compare_runs: which results file an output folder stands for, what a results file says about
its test set (recorded by the evaluator, or inferred for an older file), classes without an IoU."""

import json
import math

import pytest
import torch

from freemask.data.catalog import MetadataCatalog
from freemask.evaluation import SemSegEvaluator
from freemask.evaluation.compare_runs import (
    CompareError,
    compare,
    distinct_labels,
    find_results_file,
    format_markdown,
    read_results,
    run_name,
)

CLASSES = ["sky", "ship", "microwave"]


def _evaluate(output_dir, gt, pred, dataset="_test_compare_runs"):
    """The semantic evaluator's results file for one image (from_dataset, as the trainer builds it)."""
    MetadataCatalog.get(dataset).set(stuff_classes=CLASSES, ignore_label=255)
    try:
        evaluator = SemSegEvaluator.from_dataset(dataset, str(output_dir))
        scores = torch.nn.functional.one_hot(torch.tensor(pred), len(CLASSES)).permute(2, 0, 1).float()
        evaluator.process([{"sem_seg": torch.tensor(gt)}], [{"sem_seg": scores}])
        evaluator.evaluate()
    finally:
        MetadataCatalog.remove(dataset)
    return output_dir / "sem_seg_results.json"


def test_the_semantic_results_file_names_its_test_set_and_classes(tmp_path):
    path = _evaluate(tmp_path / "inference", [[0, 1, 1]], [[0, 1, 0]])
    saved = json.loads(path.read_text())
    assert saved["dataset"] == {"name": "_test_compare_runs", "classes": CLASSES}
    assert saved["IoU-ship"] == 50.0 and saved["IoU-microwave"] is None  # the metrics as before
    results = read_results(str(tmp_path))
    assert (results.dataset, results.classes, results.label) == ("_test_compare_runs", tuple(CLASSES), tmp_path.name)


def test_an_output_folder_stands_for_its_single_scale_or_only_results_file(tmp_path):
    single = _evaluate(tmp_path / "run" / "inference", [[0, 1]], [[0, 1]])
    multi = _evaluate(tmp_path / "run" / "inference" / "ms_flip", [[0, 1]], [[0, 0]])
    assert find_results_file(str(tmp_path / "run")) == (
        str(single),
        f" (single-scale; the multi-scale + flip pass is {multi})",
    )
    assert find_results_file(str(tmp_path / "run" / "inference"))[0] == str(single)
    assert run_name(str(multi)) == "run"
    # Several test sets (inference/<name>/): the only one, or a one-line refusal naming them.
    only = _evaluate(tmp_path / "sets" / "inference" / "ade20k_val", [[0]], [[0]])
    assert find_results_file(str(tmp_path / "sets")) == (str(only), "")
    _evaluate(tmp_path / "sets" / "inference" / "voc_val", [[0]], [[0]])
    with pytest.raises(CompareError, match=r"holds the results of 2 test sets .*ade20k_val.*voc_val.*; pass one file$"):
        find_results_file(str(tmp_path / "sets"))


def test_an_older_file_takes_its_test_set_from_the_config_it_names(tmp_path):
    path = _evaluate(tmp_path / "inference", [[0, 1]], [[0, 1]])
    older = json.loads(path.read_text())
    del older["dataset"]
    older["produced_by"] = {"iteration": 9, "config": {"DATASETS": {"TEST": ["ade20k_sem_seg_val"]}}}
    path.write_text(json.dumps(older))
    results = read_results(str(path))
    assert (results.dataset, results.classes, results.iteration) == ("ade20k_sem_seg_val", tuple(CLASSES), 9)
    older["produced_by"]["config"]["DATASETS"]["TEST"] = ["a", "b"]  # two test sets, file not in either's folder
    path.write_text(json.dumps(older))
    assert read_results(str(path)).dataset is None


def test_a_class_without_iou_on_one_side_is_left_out_and_named(tmp_path):
    a = read_results(str(_evaluate(tmp_path / "a", [[0, 1, 2]], [[0, 0, 2]])))
    b = read_results(str(_evaluate(tmp_path / "b", [[0, 1, 1]], [[0, 1, 1]])))
    assert a.iou["microwave"] == 100.0 and b.iou["microwave"] is None and b.iou["sky"] == 100.0
    comparison = compare(a, b)
    assert [(g.name, g.gain) for g in comparison.improved(5)] == [("ship", 100.0), ("sky", 50.0)]
    assert comparison.degraded(5) == [] and comparison.undefined() == ["microwave"]
    text = format_markdown(comparison, 5)
    assert "No class degraded (of 3)." in text and text.endswith("left out: microwave\n")
    assert math.isclose(comparison.overall[0].gain, 100.0 - (50.0 + 0.0 + 100.0) / 3)


def test_equal_labels_are_told_apart():
    assert distinct_labels(["run", "run"]) == ["run (A)", "run (B)"]
    assert distinct_labels(["real", "joint"]) == ["real", "joint"]
