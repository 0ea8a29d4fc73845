"""ADE20K registration: raw or prepared masks give the same samples; clear errors; 150 classes shared with synthetic."""

import json
import os
from importlib import resources

import cv2
import numpy as np
import pytest
import torch

from freemask.data.catalog import DatasetCatalog, MetadataCatalog
from freemask.data.datasets.ade20k import ADE20K_SYN_SPLITS, ade20k_meta, load_ade20k, register_ade20k
from freemask.data.errors import DatasetError
from freemask.data.mappers.semantic import SemSegDatasetMapper

ADE = "ADEChallengeData2016"
SPLITS = {"training": ("ADE_train", 3), "validation": ("ADE_val", 2)}


def raw_mask(rng):
    """(32, 32) raw labels: unlabeled border, classes 1 and 150 and a random one."""
    mask = np.zeros((32, 32), np.uint8)
    mask[4:16, 4:28] = 1
    mask[16:28, 4:16] = 150
    mask[16:28, 16:28] = rng.integers(2, 150)
    return mask


def prepare(raw):
    """What datasets/prepare_ade20k_sem_seg.py writes: 0 -> 255, k -> k - 1."""
    return np.where(raw == 0, 255, raw.astype(np.int64) - 1).astype(np.uint8)


@pytest.fixture
def ade_root(tmp_path, monkeypatch):
    """A raw-only ADEChallengeData2016 tree, $DETECTRON2_DATASETS pointing at it."""
    rng = np.random.default_rng(0)
    for split, (prefix, count) in SPLITS.items():
        os.makedirs(tmp_path / ADE / "images" / split)
        os.makedirs(tmp_path / ADE / "annotations" / split)
        for i in range(count):
            stem = f"{prefix}_{i + 1:08d}"
            image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            cv2.imwrite(str(tmp_path / ADE / "images" / split / f"{stem}.jpg"), image)
            cv2.imwrite(str(tmp_path / ADE / "annotations" / split / f"{stem}.png"), raw_mask(rng))
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    return tmp_path


def write_prepared(root, split):
    out = root / ADE / "annotations_detectron2" / split
    os.makedirs(out)
    for name in os.listdir(root / ADE / "annotations" / split):
        raw = cv2.imread(str(root / ADE / "annotations" / split / name), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(out / name), prepare(raw))


def test_metadata_150_classes_shared_with_synthetic_splits():
    classes, colors = ade20k_meta()
    assert len(classes) == len(set(classes)) == len(colors) == 150
    assert classes[:3] == ("wall", "building", "sky") and classes[-1] == "flag" and classes[43] == "signboard"
    assert colors[0] == (120, 120, 120) and all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in colors)
    data = json.loads(resources.files("freemask.data.datasets").joinpath("meta", "ade20k_150.json").read_text())
    assert set(data) == {"classes", "colors"}
    real = MetadataCatalog.get("ade20k_sem_seg_train")
    assert real.stuff_classes == list(classes) and real.stuff_colors == [list(c) for c in colors]
    for name in ["ade20k_sem_seg_val", *ADE20K_SYN_SPLITS.values()]:
        meta = MetadataCatalog.get(name)
        assert meta.stuff_classes == real.stuff_classes and meta.stuff_colors == real.stuff_colors
        assert meta.ignore_label == 255 and meta.evaluator_type == "sem_seg"


def test_raw_masks_are_reduced_on_the_fly(ade_root):
    register_ade20k()  # again: no error
    train, val = DatasetCatalog.get("ade20k_sem_seg_train"), DatasetCatalog.get("ade20k_sem_seg_val")
    assert [os.path.basename(r["file_name"]) for r in val] == ["ADE_val_00000001.jpg", "ADE_val_00000002.jpg"]
    assert len(train) == 3 and all(r["reduce_zero_label"] for r in train + val)
    assert all(f"{os.sep}annotations{os.sep}" in r["sem_seg_file_name"] for r in train + val)
    out = SemSegDatasetMapper(False, min_size_test=32)(train[0])
    labels = set(out["sem_seg"].unique().tolist())
    assert {0, 149, 255} <= labels and labels <= set(range(150)) | {255}


def test_prepared_masks_are_used_when_present_and_give_identical_samples(ade_root):
    raw_train, raw_val = load_ade20k("training"), load_ade20k("validation")
    write_prepared(ade_root, "training")
    train = DatasetCatalog.get("ade20k_sem_seg_train")
    assert not any(r["reduce_zero_label"] for r in train)
    assert all("annotations_detectron2" in r["sem_seg_file_name"] for r in train)
    assert DatasetCatalog.get("ade20k_sem_seg_val") == raw_val  # no prepared folder for this split: raw masks

    test_mapper = SemSegDatasetMapper(False, min_size_test=48)
    train_mapper = SemSegDatasetMapper(True, min_size_train=(24, 48), crop_size=(32, 32), cat_max_ratio=0.75)
    for raw, prepared in zip(raw_train, train):
        assert raw["file_name"] == prepared["file_name"]
        a, b = test_mapper(raw), test_mapper(prepared)
        assert torch.equal(a["sem_seg"], b["sem_seg"]) and torch.equal(a["image"], b["image"])
        a, b = (train_mapper(r, np.random.default_rng(7)) for r in (raw, prepared))
        assert torch.equal(a["sem_seg"], b["sem_seg"]) and torch.equal(a["image"], b["image"])


def test_missing_or_incomplete_folders_say_what_to_do(ade_root, tmp_path, monkeypatch):
    write_prepared(ade_root, "training")
    os.remove(ade_root / ADE / "annotations_detectron2" / "training" / "ADE_train_00000002.png")
    with pytest.raises(DatasetError, match="prepare_ade20k_sem_seg.py") as error:
        DatasetCatalog.get("ade20k_sem_seg_train")
    assert "ADE_train_00000002.jpg" in str(error.value) and "\n" not in str(error.value)

    for folder in ("annotations", "annotations_detectron2"):
        os.rename(ade_root / ADE / folder, ade_root / ADE / f"{folder}.bak")
    with pytest.raises(DatasetError, match="neither .* nor .* exists; download ADEChallengeData2016.zip"):
        DatasetCatalog.get("ade20k_sem_seg_val")

    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "nowhere"))
    with pytest.raises(DatasetError, match="ADEChallengeData2016.zip") as error:
        DatasetCatalog.get("ade20k_sem_seg_train")
    assert os.path.join(str(tmp_path / "nowhere"), ADE, "images", "training") in str(error.value)
    with pytest.raises(DatasetError, match="ADE20K-Synthetic"):
        DatasetCatalog.get("ade20k_syn_sem_seg_train")


def test_synthetic_ade20k_uses_raw_label_convention(tmp_path, monkeypatch):
    root = tmp_path / "ADE20K_Synthetic"
    for folder in ("images", "annotations"):
        os.makedirs(root / folder)
    mask = raw_mask(np.random.default_rng(1))
    for seed in (42, 43):
        cv2.imwrite(str(root / "images" / f"ADE_train_00000001_seed_{seed}.jpg"), np.zeros((32, 32, 3), np.uint8))
        cv2.imwrite(str(root / "annotations" / f"ADE_train_00000001_seed_{seed}.png"), mask)
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    records = DatasetCatalog.get("ade20k_syn_sem_seg_train")
    assert [(r["real_stem"], r["seed"], r["reduce_zero_label"]) for r in records] == [
        ("ADE_train_00000001", 42, True),
        ("ADE_train_00000001", 43, True),
    ]
    out = SemSegDatasetMapper(False, min_size_test=32)(records[0])
    assert torch.equal(out["sem_seg"], torch.from_numpy(prepare(mask).astype(np.int64)))
