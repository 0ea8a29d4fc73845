"""The evaluators' one results writer: strict JSON (NaN anywhere -> null), the bytes the evaluators always wrote,
and, under a provenance, the weights (path, sha256) and config that produced the results."""

import hashlib
import json
import math

from freemask.evaluation.results_json import Provenance, results_produced_by, write_results_json


def test_nan_becomes_null_at_any_depth_and_the_folder_is_created(tmp_path):
    path = tmp_path / "inference" / "results.json"
    metrics = {"mIoU": 50.0, "IoU-car": math.nan, "per_image": [{"PQ": math.nan}, (1.5, math.nan)]}
    write_results_json(str(path), metrics)
    assert json.loads(path.read_text()) == {"mIoU": 50.0, "IoU-car": None, "per_image": [{"PQ": None}, [1.5, None]]}
    lines = ["{", '  "mIoU": 50.0,', '  "IoU-car": null,', '  "per_image": [', "    {", '      "PQ": null', "    },"]
    lines += ["    [", "      1.5,", "      null", "    ]", "  ]", "}"]
    assert path.read_text() == "\n".join(lines)  # indented by 2, no final newline
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]
    assert math.isnan(metrics["IoU-car"])  # the caller's metrics are left as they are


def test_results_written_under_a_provenance_name_the_weights_and_config(tmp_path):
    weights = tmp_path / "model_final.pth"
    weights.write_bytes(b"weights of M1")
    config = {"MODEL": {"WEIGHTS": str(weights), "PIXEL_MEAN": (1.0, 2.0)}, "OUTPUT_DIR": "out"}
    path = tmp_path / "inference" / "sem_seg_results.json"
    with results_produced_by(Provenance(str(weights), config)):
        write_results_json(str(path), {"mIoU": 50.0})
        write_results_json(str(tmp_path / "coco_instances_results.json"), [{"score": 0.5}])
    written = json.loads(path.read_text())
    assert written["mIoU"] == 50.0
    assert written["produced_by"] == {
        "weights": {"path": str(weights), "sha256": hashlib.sha256(b"weights of M1").hexdigest()},
        "iteration": None,
        "config": {"MODEL": {"WEIGHTS": str(weights), "PIXEL_MEAN": [1.0, 2.0]}, "OUTPUT_DIR": "out"},
    }
    # COCO's detection list stays a bare list; outside the block nothing is added
    assert json.loads((tmp_path / "coco_instances_results.json").read_text()) == [{"score": 0.5}]
    write_results_json(str(path), {"mIoU": 1.0})
    assert json.loads(path.read_text()) == {"mIoU": 1.0}


def test_a_model_evaluated_in_memory_names_no_file_and_its_iteration(tmp_path):
    record = Provenance(None, {"OUTPUT_DIR": "run"}, iteration=9).record()
    assert record == {"weights": {"path": None, "sha256": None}, "iteration": 9, "config": {"OUTPUT_DIR": "run"}}


def test_filter_stats_name_the_filter_model(tmp_path):
    from freemask.synthetic.filter.outputs import write_stats

    weights = tmp_path / "filter_model.pth"
    weights.write_bytes(b"filter")
    with results_produced_by(Provenance(str(weights), {"MODEL": {"WEIGHTS": str(weights)}})):
        write_stats(str(tmp_path / "filter_stats.json"), {"format": "freemask.filter_stats/1"})
    stats = json.loads((tmp_path / "filter_stats.json").read_text())
    assert stats["produced_by"]["weights"]["sha256"] == hashlib.sha256(b"filter").hexdigest()
