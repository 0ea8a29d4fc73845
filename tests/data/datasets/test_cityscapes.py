"""Cityscapes: 19-class metadata, registration on a fake tree, errors naming the preparation script, and the
preparation (label ids -> train ids) on fake gtFine label-id PNGs."""

import importlib.util
import os
import pathlib

import cv2
import numpy as np
import pytest

from freemask.data.catalog import DatasetCatalog, MetadataCatalog
from freemask.data.datasets.cityscapes import cityscapes_meta
from freemask.data.errors import DatasetError
from freemask.data.mappers.semantic import SemSegDatasetMapper
from freemask.data.prepare.sem_seg import cityscapes_lut, prepare_cityscapes

FRAMES = {"train": [("aachen", "aachen_000000_000019"), ("bochum", "bochum_000000_000313")],
          "val": [("frankfurt", "frankfurt_000000_000294")]}  # fmt: skip

REPO = pathlib.Path(__file__).resolve().parents[3]


def prepare_main(argv):
    """datasets/prepare_cityscapes_sem_seg.py's main(), run in this process."""
    spec = importlib.util.spec_from_file_location(
        "prepare_cityscapes_sem_seg", REPO / "datasets" / "prepare_cityscapes_sem_seg.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(argv)


def fake_tree(root, train_ids=True):
    """Images and raw label ids (0 unlabeled, 7 road, 26 car, 33 bicycle, 9 parking), optionally their train ids."""
    base = root / "cityscapes"
    labels = np.zeros((16, 32), np.uint8)
    labels[:8], labels[8:, :8], labels[8:, 8:16], labels[8:, 16:] = 7, 26, 33, 9
    for split, frames in FRAMES.items():
        for city, stem in frames:
            os.makedirs(base / "leftImg8bit" / split / city, exist_ok=True)
            os.makedirs(base / "gtFine" / split / city, exist_ok=True)
            cv2.imwrite(str(base / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png"), np.zeros((16, 32, 3)))
            cv2.imwrite(str(base / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png"), labels)
            if train_ids:
                cv2.imwrite(
                    str(base / "gtFine" / split / city / f"{stem}_gtFine_labelTrainIds.png"), cityscapes_lut()[labels]
                )
    return base


def test_metadata_and_label_id_table():
    classes, colors = cityscapes_meta()
    assert len(classes) == len(colors) == 19 and (classes[0], classes[13], classes[18]) == ("road", "car", "bicycle")
    lut = cityscapes_lut()
    assert (lut[7], lut[8], lut[26], lut[33]) == (0, 1, 13, 18)
    assert lut[[0, 1, 6, 9, 10, 14, 15, 16, 18, 29, 30, 34, 255]].tolist() == [255] * 13  # void and unevaluated ids
    meta = MetadataCatalog.get("cityscapes_fine_sem_seg_train")
    assert meta.stuff_classes == list(classes) and meta.ignore_label == 255 and meta.evaluator_type == "sem_seg"


def test_registered_splits_read_train_ids_across_cities(tmp_path, monkeypatch):
    fake_tree(tmp_path)
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    train, val = DatasetCatalog.get("cityscapes_fine_sem_seg_train"), DatasetCatalog.get("cityscapes_fine_sem_seg_val")
    assert [os.path.basename(r["file_name"]) for r in train] == [
        "aachen_000000_000019_leftImg8bit.png",
        "bochum_000000_000313_leftImg8bit.png",
    ]
    assert len(val) == 1 and val[0]["sem_seg_file_name"].endswith("frankfurt_000000_000294_gtFine_labelTrainIds.png")
    out = SemSegDatasetMapper(False, min_size_test=16)(val[0])
    assert set(out["sem_seg"].unique().tolist()) == {0, 13, 18, 255}


def test_missing_folders_and_unprepared_labels_name_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    with pytest.raises(DatasetError, match="leftImg8bit_trainvaltest.zip"):
        DatasetCatalog.get("cityscapes_fine_sem_seg_train")
    fake_tree(tmp_path, train_ids=False)
    with pytest.raises(DatasetError, match="2 of 2 .*prepare_cityscapes_sem_seg.py") as error:
        DatasetCatalog.get("cityscapes_fine_sem_seg_train")
    assert "\n" not in str(error.value)


def test_prepare_script_writes_train_ids_once(tmp_path, capsys):
    base = fake_tree(tmp_path, train_ids=False)
    assert prepare_main(["--root", str(tmp_path), "--workers", "0"]) == 0
    out = cv2.imread(str(base / "gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelTrainIds.png"), -1)
    assert out.dtype == np.uint8 and (out[:8] == 0).all() and (out[8:, :8] == 13).all()
    assert (out[8:, 8:16] == 18).all() and (out[8:, 16:] == 255).all()  # parking is not evaluated
    assert "converted 3" in capsys.readouterr().out
    assert prepare_cityscapes(str(tmp_path), progress=False).skipped == 3  # idempotent re-run
    assert prepare_main(["--root", str(tmp_path / "nowhere")]) == 1
    assert "gtFine_trainvaltest.zip" in capsys.readouterr().err
