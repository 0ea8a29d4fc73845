import json
import math

import numpy as np
import pytest

from freemask.synthetic.class_loss import ClassLoss, ClassLossError, read_class_loss, write_class_loss


def test_round_trip_keeps_means_counts_and_absent_classes(tmp_path):
    stats = ClassLoss.from_sums("toy", 255, ["sky", "road", "boat"], np.array([3.0, 0.0, 1.0]), np.array([4, 0, 8]))
    path = tmp_path / "nested" / "class_loss.json"
    write_class_loss(str(path), stats)
    back = read_class_loss(str(path), num_classes=3)
    assert back == stats
    assert back.mean_loss == [0.75, None, 0.125]
    means = back.mean_loss_array()
    assert means[0] == 0.75 and math.isnan(means[1])
    assert [p.name for p in path.parent.iterdir()] == ["class_loss.json"], "no temporary file left behind"


def test_unusable_files_fail_with_the_file_and_the_fix(tmp_path):
    with pytest.raises(ClassLossError, match="not found.*filter_syn"):
        read_class_loss(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ClassLossError, match="bad.json"):
        read_class_loss(str(bad))
    bad.write_text(json.dumps({"classes": []}))
    with pytest.raises(ClassLossError, match="not a class-loss file"):
        read_class_loss(str(bad))
    good = tmp_path / "good.json"
    write_class_loss(str(good), ClassLoss.from_sums("d", 0, ["a", "b"], np.ones(2), np.ones(2)))
    with pytest.raises(ClassLossError, match="2 classes but the model/dataset has 3"):
        read_class_loss(str(good), num_classes=3)
    data = json.loads(good.read_text())
    data["classes"][1]["id"] = 5
    good.write_text(json.dumps(data))
    with pytest.raises(ClassLossError, match="malformed"):
        read_class_loss(str(good))
