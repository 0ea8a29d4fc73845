"""tools/check_dataset.py and freemask.data.check: every planted defect is reported by file name and kind."""

import importlib.util
import json
import os
import pathlib

import cv2
import numpy as np
import pytest
from script_runner import run_script

from freemask.data.catalog import DatasetCatalog, MetadataCatalog
from freemask.data.check import check_dataset
from freemask.data.errors import DatasetError

REPO = pathlib.Path(__file__).resolve().parents[2]
CLASSES = ["sky", "grass", "road"]
H, W = 2, 3


def _image(path: pathlib.Path, height: int = H, width: int = W) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((height, width, 3), 128, np.uint8))
    return str(path)


def _mask(path: pathlib.Path, values) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.asarray(values, dtype=np.uint8))
    return str(path)


def _truncate(path: str) -> None:
    data = pathlib.Path(path).read_bytes()
    pathlib.Path(path).write_bytes(data[: len(data) - 40])


@pytest.fixture
def register():
    """Register in-memory splits for one test and remove them afterwards."""
    names = []

    def _register(name: str, records: list) -> str:
        DatasetCatalog.register(name, lambda: records)
        MetadataCatalog.get(name).set(stuff_classes=CLASSES, ignore_label=255)
        names.append(name)
        return name

    yield _register
    for name in names:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def _record(image: str, mask: str, reduce_zero: bool = False) -> dict:
    return {"file_name": image, "sem_seg_file_name": mask, "reduce_zero_label": reduce_zero}


def _clean_records(root: pathlib.Path) -> list:
    return [
        _record(_image(root / "a.jpg"), _mask(root / "a.png", [[0, 0, 1], [255, 0, 1]])),
        # raw ADE convention: 0 -> ignore, k -> k - 1
        _record(_image(root / "b.jpg"), _mask(root / "b.png", [[1, 3, 3], [0, 3, 1]]), reduce_zero=True),
    ]


def _load_tool():
    spec = importlib.util.spec_from_file_location("check_dataset_tool", REPO / "tools" / "check_dataset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_planted_problem_is_reported_by_file_and_kind(tmp_path, register):
    bad_jpeg = _image(tmp_path / "truncated.jpg")
    _truncate(bad_jpeg)
    rgb_mask = tmp_path / "rgb.png"
    cv2.imwrite(str(rgb_mask), np.zeros((H, W, 3), np.uint8))
    records = _clean_records(tmp_path) + [
        _record(bad_jpeg, _mask(tmp_path / "truncated.png", np.zeros((H, W)))),
        _record(_image(tmp_path / "rgb.jpg"), str(rgb_mask)),
        _record(_image(tmp_path / "small.jpg"), _mask(tmp_path / "small.png", np.zeros((H, W + 1)))),
        _record(_image(tmp_path / "label.jpg"), _mask(tmp_path / "label.png", [[0, 1, 2], [7, 255, 3]])),
        _record(_image(tmp_path / "nomask.jpg"), str(tmp_path / "nomask.png")),
    ]
    report = check_dataset(register("check_bad", records), workers=2, progress=False)
    found = {kind: [path for path, _ in items] for kind, items in report.problems.items()}
    assert found == {
        "bad_image": [bad_jpeg],
        "mask_not_single_channel": [str(rgb_mask)],
        "size_mismatch": [str(tmp_path / "small.png")],
        "label_out_of_range": [str(tmp_path / "label.png")],
        "missing_mask": [str(tmp_path / "nomask.png")],
    }
    assert (report.num_images, report.num_ok, report.ok) == (7, 2, False)
    message = report.problems["label_out_of_range"][0][1]
    assert "labels 3, 7 outside 0..2" in message
    assert "3x2" in report.problems["size_mismatch"][0][1] and "4x2" in report.problems["size_mismatch"][0][1]
    text = report.format(max_problems=1)
    assert "7 images, 2 ok, 5 with problems" in text and "missing_mask: 1" in text


def test_clean_split_exits_zero_with_the_right_histogram(tmp_path, register, capsys):
    name = register("check_clean", _clean_records(tmp_path))
    out = tmp_path / "report.json"
    assert _load_tool().main([name, "--workers", "2", "--json", str(out), "--no-progress"]) == 0
    assert "check_clean: 2 images, 2 ok, 0 with problems" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["ok"] is True
    data = report["datasets"][name]
    # a.png: sky 3, grass 2, ignore 1; b.png after reduction: sky 2, road 3, ignore 1
    assert [(h["name"], h["pixels"], h["images"]) for h in data["histogram"]] == [
        ("sky", 5, 2),
        ("grass", 2, 1),
        ("road", 3, 1),
    ]
    assert [h["percent"] for h in data["histogram"]] == pytest.approx([50.0, 20.0, 30.0])
    assert data["ignore_pixels"] == 2 and data["problems"] == {}


def test_loader_failure_is_a_load_error_and_unknown_names_fail(tmp_path, capsys):
    def failing():
        raise DatasetError(f"{tmp_path}: not found")

    DatasetCatalog.register("check_broken", failing)
    MetadataCatalog.get("check_broken").set(stuff_classes=CLASSES, ignore_label=255)
    try:
        report = check_dataset("check_broken", workers=0, progress=False)
        assert report.problems == {"load_error": [("check_broken", f"{tmp_path}: not found")]}
    finally:
        DatasetCatalog.remove("check_broken")
        MetadataCatalog.remove("check_broken")
    assert _load_tool().main(["no_such_dataset"]) == 1
    assert "not registered: no_such_dataset" in capsys.readouterr().err


def test_custom_dataset_from_config_overrides(tmp_path, capsys):
    root = tmp_path / "mine"
    for split in ("training", "validation"):
        _image(root / "images" / split / "x.jpg")
        _mask(root / "annotations" / split / "x.png", [[0, 1, 2], [2, 1, 9]])  # 9: out of range
    (tmp_path / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    opts = ["DATASETS.CUSTOM.NAME", "mine", "DATASETS.CUSTOM.ROOT", str(root)]
    opts += ["DATASETS.CUSTOM.CLASSES_FILE", str(tmp_path / "classes.txt")]
    try:
        assert _load_tool().main(["--workers", "1", "--no-progress", *opts]) == 1
    finally:
        for name in ("mine_sem_seg_train", "mine_sem_seg_val"):
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
    out = capsys.readouterr().out
    assert "mine_sem_seg_train: 1 images, 0 ok" in out and "mine_sem_seg_val: 1 images, 0 ok" in out
    assert "labels 9 outside 0..2" in out


def test_cli_subprocess_exits_one_on_a_truncated_image(tmp_path):
    """The builtin toy split, rebuilt by hand under a temporary DETECTRON2_DATASETS with one truncated JPEG."""
    real = tmp_path / "toy" / "ADEChallengeData2016"
    for i in range(3):
        _image(real / "images" / "training" / f"t{i}.jpg")
        _mask(real / "annotations" / "training" / f"t{i}.png", [[1, 2, 3], [4, 5, 6]])
    _truncate(str(real / "images" / "training" / "t1.jpg"))
    out = tmp_path / "report.json"
    run = run_script(
        [REPO / "tools" / "check_dataset.py", "toy_sem_seg_train", "--workers", "2", "--json", out],
        env={**os.environ, "DETECTRON2_DATASETS": str(tmp_path)},
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "t1.jpg" in run.stdout and "bad_image: 1" in run.stdout
    problems = json.loads(out.read_text())["datasets"]["toy_sem_seg_train"]["problems"]
    assert [p["file"] for p in problems["bad_image"]] == [str(real / "images" / "training" / "t1.jpg")]


def test_synthetic_pairs_without_a_real_mask_are_reported(toy_datasets, tmp_path, monkeypatch, capsys):
    """Issue 18.9: seed files of a real mask that is not in the real split pass every per-file check, but
    resample_syn.py rejects them; check_dataset must name them."""
    import shutil

    datasets = tmp_path / "datasets"
    shutil.copytree(toy_datasets, datasets)
    real = datasets / "toy" / "ADEChallengeData2016"
    stem = sorted((real / "annotations" / "training").glob("*.png"))[0].stem
    (real / "annotations" / "training" / f"{stem}.png").unlink()
    (real / "images" / "training" / f"{stem}.jpg").unlink()
    monkeypatch.setenv("DETECTRON2_DATASETS", str(datasets))
    report = check_dataset("toy_syn_sem_seg_train", workers=0, progress=False)
    orphans = sorted(path for path, _ in report.problems["no_real_mask"])
    syn_images = sorted(str(p) for p in (datasets / "toy" / "ADE20K_Synthetic" / "images").glob(f"{stem}_seed_*.jpg"))
    assert orphans == syn_images and len(orphans) == 2 and list(report.problems) == ["no_real_mask"]
    assert report.num_ok == report.num_images - 2
    assert _load_tool().main(["toy_syn_sem_seg_train", "toy_sem_seg_train", "--workers", "1", "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "no_real_mask: 2" in out and f"real mask '{stem}', which is not in 'toy_sem_seg_train'" in out
    assert "toy_sem_seg_train: 7 images, 7 ok" in out
