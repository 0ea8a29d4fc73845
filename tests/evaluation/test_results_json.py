"""The evaluators' one results writer: strict JSON (NaN anywhere -> null), the bytes the evaluators always wrote."""

import json
import math

from freemask.evaluation.results_json import write_results_json


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
