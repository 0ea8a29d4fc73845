"""COCO-Stuff-10k: registration on a fake tree (image lists, prepared maps), errors naming the fix, and the
preparation from official-style .mat annotations written with scipy."""

import importlib.util
import os
import pathlib

import cv2
import numpy as np
import pytest
from scipy.io import savemat

from freemask.data.catalog import DatasetCatalog, MetadataCatalog
from freemask.data.datasets.coco_stuff import coco_stuff_meta
from freemask.data.errors import DatasetError
from freemask.data.mappers.semantic import SemSegDatasetMapper
from freemask.data.prepare.sem_seg import prepare_coco_stuff_10k

SPLITS = {
    "train": ["COCO_train2014_000000000077", "COCO_train2014_000000000078"],
    "test": ["COCO_train2014_000000000081"],
}

REPO = pathlib.Path(__file__).resolve().parents[3]


def prepare_main(argv):
    """datasets/prepare_coco_stuff_10k_sem_seg.py's main(), run in this process."""
    spec = importlib.util.spec_from_file_location(
        "prepare_coco_stuff_10k_sem_seg", REPO / "datasets" / "prepare_coco_stuff_10k_sem_seg.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(argv)


def fake_release(root):
    """cocostuff-10k-v1.1 layout: images/, annotations/*.mat (S: 0 unlabeled, 1 person, 12 unused, 182 wood)."""
    base = root / "coco_stuff_10k"
    for folder in ("images", "annotations", "imageLists"):
        os.makedirs(base / folder, exist_ok=True)
    labels = np.zeros((12, 20), np.uint16)
    labels[:6], labels[6:, :10], labels[6:, 10:15] = 1, 182, 12
    for split, names in SPLITS.items():
        (base / "imageLists" / f"{split}.txt").write_text("".join(f"{n}\n" for n in names) + "\n")
        for name in names:
            cv2.imwrite(str(base / "images" / f"{name}.jpg"), np.zeros((12, 20, 3), np.uint8))
            savemat(str(base / "annotations" / f"{name}.mat"), {"S": labels, "names": ["x"]})
    return base


def test_metadata_is_coco_stuffs_171_classes():
    meta = MetadataCatalog.get("coco_stuff_10k_sem_seg_test")
    assert meta.stuff_classes == list(coco_stuff_meta()[0]) and len(meta.stuff_classes) == 171
    assert meta.ignore_label == 255 and meta.evaluator_type == "sem_seg"


def test_prepare_from_mat_then_registered_splits_load(tmp_path, monkeypatch, capsys):
    base = fake_release(tmp_path)
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    with pytest.raises(DatasetError, match="not prepared.*prepare_coco_stuff_10k_sem_seg.py"):
        DatasetCatalog.get("coco_stuff_10k_sem_seg_train")
    assert prepare_main(["--workers", "0"]) == 0
    assert "converted 3" in capsys.readouterr().out
    out = cv2.imread(str(base / "annotations_detectron2" / "test" / f"{SPLITS['test'][0]}.png"), -1)
    assert out.dtype == np.uint8 and out.shape == (12, 20)
    assert (out[:6] == 0).all() and (out[6:, :10] == 170).all() and (out[6:, 10:] == 255).all()
    assert prepare_coco_stuff_10k(str(tmp_path), progress=False).skipped == 3  # idempotent re-run

    train, test = DatasetCatalog.get("coco_stuff_10k_sem_seg_train"), DatasetCatalog.get("coco_stuff_10k_sem_seg_test")
    assert [os.path.basename(r["file_name"]) for r in train] == [f"{n}.jpg" for n in SPLITS["train"]]
    assert len(test) == 1 and not test[0]["reduce_zero_label"]
    sample = SemSegDatasetMapper(False, min_size_test=12)(test[0])
    assert set(sample["sem_seg"].unique().tolist()) == {0, 170, 255}

    os.remove(base / "images" / f"{SPLITS['train'][1]}.jpg")
    with pytest.raises(DatasetError, match="1 of 2 .*re-extract"):
        DatasetCatalog.get("coco_stuff_10k_sem_seg_train")


def test_bad_inputs_name_the_file(tmp_path, capsys):
    assert prepare_main(["--root", str(tmp_path)]) == 1
    assert "imageLists" in capsys.readouterr().err
    base = fake_release(tmp_path)
    savemat(str(base / "annotations" / f"{SPLITS['test'][0]}.mat"), {"S": np.full((4, 4), 200, np.uint16)})
    result = prepare_coco_stuff_10k(str(tmp_path), progress=False)
    assert result.converted == 2 and len(result.errors) == 1 and "label 200 above 182" in result.errors[0]
