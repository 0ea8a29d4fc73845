"""A full disk under a datasets/prepare_*.py run: one line naming the file, and the run stops there (every later
file would fail alike), instead of one error per file."""

import os

import cv2
import numpy as np

from freemask.data.prepare.cli import prepare_main
from freemask.data.prepare.sem_seg import prepare_ade20k


def test_a_full_disk_stops_the_conversion_with_one_line(tmp_path, monkeypatch, capsys):
    raw = tmp_path / "ADEChallengeData2016" / "annotations"
    for split, count in (("training", 5), ("validation", 1)):
        (raw / split).mkdir(parents=True)
        for i in range(count):
            cv2.imwrite(str(raw / split / f"ADE_{split}_{i}.png"), np.full((8, 8), i + 1, np.uint8))
    before = {p: p.read_bytes() for p in raw.rglob("*.png")}
    real_open = open
    to_dev_full = lambda path, *a, **k: real_open("/dev/full", *a, **k)  # noqa: E731  (ENOSPC on every write)
    monkeypatch.setattr("freemask.utils.atomic.open", to_dev_full, raising=False)
    assert prepare_main("", "ADEChallengeData2016", prepare_ade20k, ["--root", str(tmp_path), "--workers", "1"]) == 1
    first = tmp_path / "ADEChallengeData2016" / "annotations_detectron2" / "training" / "ADE_training_0.png"
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if line and not line.startswith("ADE20K training")] == [  # less the progress bar
        f"error: cannot write {first}: No space left on device (ENOSPC); ADE_training_0.png was not written (an "
        f"earlier ADE_training_0.png is intact); free space in {first.parent} (or choose another output folder), "
        "then run the same command again"
    ]
    assert os.listdir(first.parent) == [] and {p: p.read_bytes() for p in raw.rglob("*.png")} == before
