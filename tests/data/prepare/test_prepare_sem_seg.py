"""datasets/prepare_*.py conversions: label values, idempotence, recovery from interrupted runs, read-only inputs."""

import hashlib
import importlib.util
import os
import pathlib
import subprocess
import sys

import cv2
import numpy as np
import pytest

from freemask.data.prepare.sem_seg import (
    check_coco_stuff_ids,
    coco_stuff_lut,
    load_coco_stuff_ids,
    output_is_current,
    prepare_ade20k,
    prepare_coco_stuff,
)

REPO = pathlib.Path(__file__).resolve().parents[3]
# COCO's 80 thing ids (1..90 without the 10 unused ones) and 91 stuff ids.
UNUSED_THINGS = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}
COCO_IDS = [i for i in range(1, 91) if i not in UNUSED_THINGS] + list(range(92, 183))


def _write(path: pathlib.Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), mask)


def _read(path: pathlib.Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def _hashes(folder: pathlib.Path) -> dict:
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def ade_root(tmp_path: pathlib.Path) -> pathlib.Path:
    rng = np.random.default_rng(0)
    raw = tmp_path / "ADEChallengeData2016" / "annotations"
    for split, count in (("training", 5), ("validation", 3)):
        for i in range(count):
            mask = rng.integers(0, 151, size=(9 + i, 13), dtype=np.uint8)
            mask[0, :3] = (0, 1, 150)
            _write(raw / split / f"ADE_{split}_{i:08d}.png", mask)
    return tmp_path


def test_ade20k_values_idempotence_and_read_only_inputs(ade_root):
    raw = ade_root / "ADEChallengeData2016" / "annotations"
    before = _hashes(raw)
    first = prepare_ade20k(str(ade_root), workers=2, progress=False)
    assert (first.converted, first.skipped, first.errors) == (8, 0, [])
    for src in raw.rglob("*.png"):
        out = _read(ade_root / "ADEChallengeData2016" / "annotations_detectron2" / src.parent.name / src.name)
        mask = _read(src).astype(np.int64)
        expected = np.where(mask == 0, 255, mask - 1)
        assert out.dtype == np.uint8 and np.array_equal(out, expected)
        assert out[0, :3].tolist() == [255, 0, 149]
    second = prepare_ade20k(str(ade_root), workers=2, progress=False)
    assert (second.converted, second.skipped) == (0, 8)
    assert _hashes(raw) == before


def test_interrupted_run_is_redone(ade_root):
    prepare_ade20k(str(ade_root), workers=2, progress=False)
    out_dir = ade_root / "ADEChallengeData2016" / "annotations_detectron2" / "training"
    partial, missing = out_dir / "ADE_training_00000001.png", out_dir / "ADE_training_00000002.png"
    good = partial.read_bytes()
    partial.write_bytes(good[: len(good) // 2])  # a crash mid-write of a non-atomic tool
    missing.unlink()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = out_dir / f".ADE_training_00000002.png.{int(dead.stdout)}.tmp"  # a killed run's temporary file
    live = out_dir / f".ADE_training_00000003.png.{os.getpid()}.tmp"  # a write still going on in a live process
    for path in (stale, live):
        path.write_bytes(b"junk")
    assert not output_is_current(
        str(ade_root / "ADEChallengeData2016/annotations/training" / partial.name), str(partial)
    )
    result = prepare_ade20k(str(ade_root), workers=2, progress=False)
    assert (result.converted, result.skipped) == (2, 6)
    assert partial.read_bytes() == good and missing.exists() and not stale.exists() and live.exists()
    live.unlink()
    forced = prepare_ade20k(str(ade_root), workers=1, force=True, progress=False)
    assert (forced.converted, forced.skipped) == (8, 0)


def test_ade20k_rejects_prepared_masks_by_file_name(ade_root):
    bad = ade_root / "ADEChallengeData2016" / "annotations" / "validation" / "ADE_validation_00000001.png"
    _write(bad, np.full((4, 4), 255, np.uint8))
    result = prepare_ade20k(str(ade_root), workers=2, progress=False)
    assert result.converted == 7 and len(result.errors) == 1
    assert str(bad) in result.errors[0] and "255" in result.errors[0]


def test_missing_raw_folder_names_it(tmp_path):
    with pytest.raises(ValueError, match="ADEChallengeData2016/annotations/training"):
        prepare_ade20k(str(tmp_path), progress=False)


def test_coco_stuff_mapping(tmp_path):
    # stored value = COCO id - 1: id 1 (person) -> 0, id 2 -> 1, id 12 (unused) -> 255, id 13 -> 11,
    # id 91 (unused) -> 255, id 92 (first stuff) -> 80, id 182 -> 170, id 183 ("other") -> 255, 255 stays 255.
    stored = np.array([[0, 1, 11, 12, 90], [91, 181, 182, 255, 200]], dtype=np.uint8)
    expected = np.array([[0, 1, 255, 11, 255], [80, 170, 255, 255, 255]], dtype=np.uint8)
    base = tmp_path / "coco" / "stuffthingmaps_trainval2017"
    _write(base / "train2017" / "000000000009.png", stored)
    _write(base / "val2017" / "000000000139.png", stored[:, ::-1].copy())
    result = prepare_coco_stuff(str(tmp_path), workers=2, progress=False, ids=COCO_IDS)
    assert (result.converted, result.errors) == (2, [])
    out = tmp_path / "coco" / "stuffthingmaps_detectron2"
    assert np.array_equal(_read(out / "train2017" / "000000000009.png"), expected)
    assert np.array_equal(_read(out / "val2017" / "000000000139.png"), expected[:, ::-1])
    lut = coco_stuff_lut(COCO_IDS)
    assert sorted(set(lut.tolist()) - {255}) == list(range(171))


def test_coco_ids_are_checked():
    check_coco_stuff_ids(COCO_IDS)
    with pytest.raises(ValueError, match="coco_stuff_171.json"):
        check_coco_stuff_ids(COCO_IDS[:-1] + [183])
    with pytest.raises(ValueError, match="80 increasing thing ids"):
        check_coco_stuff_ids(sorted(COCO_IDS[1:] + [91]))


def test_packaged_coco_ids_are_the_171_used_ids():
    assert load_coco_stuff_ids() == COCO_IDS


def _script_main(name: str):
    """The script's main(), loaded in this process (a subprocess would re-import torch for seconds)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "datasets" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.mark.parametrize("name", ["prepare_ade20k_sem_seg", "prepare_coco_stuff_164k_sem_seg"])
def test_cli_reports_and_exits_nonzero_on_errors(ade_root, capsys, name):
    main = _script_main(name)
    if name == "prepare_ade20k_sem_seg":
        assert main(["--root", str(ade_root), "--workers", "2"]) == 0
        assert "converted 8, already done 0, failed 0" in capsys.readouterr().out
    assert main(["--root", str(ade_root / "nowhere")]) == 1
    assert "raw mask folder not found" in capsys.readouterr().err
