"""COCO-Stuff-164K registration: prepared masks, 171 classes and COCO ids, errors naming the preparation script."""

import json
import os
from importlib import resources

import cv2
import numpy as np
import pytest
import torch

from freemask.data.catalog import DatasetCatalog, MetadataCatalog
from freemask.data.datasets.coco_stuff import COCO_STUFF_SYN_SPLITS, coco_stuff_meta
from freemask.data.errors import DatasetError
from freemask.data.mappers.semantic import SemSegDatasetMapper
from freemask.data.prepare.sem_seg import load_coco_stuff_ids


def coco_meta_json():
    text = resources.files("freemask.data.datasets").joinpath("meta", "coco_stuff_171.json").read_text("utf-8")
    return json.loads(text)


def write_split(root, folder, split, count, masks=True):
    os.makedirs(root / "coco" / split, exist_ok=True)
    os.makedirs(root / "coco" / folder / split, exist_ok=True)
    for i in range(count):
        stem = f"{i + 1:012d}"
        cv2.imwrite(str(root / "coco" / split / f"{stem}.jpg"), np.full((32, 32, 3), 60 * i, np.uint8))
        mask = np.full((32, 32), 255, np.uint8)
        mask[:16] = 0  # person
        mask[16:, :16] = 170  # wood
        if masks:
            cv2.imwrite(str(root / "coco" / folder / split / f"{stem}.png"), mask)


def test_metadata_171_classes_and_coco_ids():
    classes, colors = coco_stuff_meta()
    assert len(classes) == len(set(classes)) == len(colors) == 171
    assert (classes[0], classes[79], classes[80], classes[-1]) == ("person", "toothbrush", "banner", "wood")
    data = coco_meta_json()
    ids = data["coco_ids"]
    assert ids == load_coco_stuff_ids() and len(ids) == len(set(ids)) == 171 and ids == sorted(ids)
    unused = sorted(set(range(1, 92)) - set(ids))
    assert unused == [12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91]
    assert ids[80:] == list(range(92, 183))
    assert (ids[classes.index("stop sign")], ids[classes.index("toothbrush")], ids[classes.index("banner")]) == (
        13,
        90,
        92,
    )
    real = MetadataCatalog.get("coco_2017_train_stuff_sem_seg")
    assert real.stuff_classes == list(classes) and real.ignore_label == 255 and real.evaluator_type == "sem_seg"
    for name in ["coco_2017_val_stuff_sem_seg", *COCO_STUFF_SYN_SPLITS.values()]:
        meta = MetadataCatalog.get(name)
        assert meta.stuff_classes == real.stuff_classes and meta.stuff_colors == real.stuff_colors
        assert meta.ignore_label == 255


def test_prepared_layout_loads_without_label_reduction(tmp_path, monkeypatch):
    write_split(tmp_path, "stuffthingmaps_detectron2", "train2017", 3)
    write_split(tmp_path, "stuffthingmaps_detectron2", "val2017", 2)
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    train, val = DatasetCatalog.get("coco_2017_train_stuff_sem_seg"), DatasetCatalog.get("coco_2017_val_stuff_sem_seg")
    assert (len(train), len(val)) == (3, 2) and not any(r["reduce_zero_label"] for r in train + val)
    assert os.path.basename(val[1]["file_name"]) == "000000000002.jpg"
    assert val[1]["sem_seg_file_name"].endswith(
        os.path.join("stuffthingmaps_detectron2", "val2017", "000000000002.png")
    )
    out = SemSegDatasetMapper(False, min_size_test=32)(val[0])
    assert set(out["sem_seg"].unique().tolist()) == {0, 170, 255}


def test_missing_prepared_masks_name_the_script(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    with pytest.raises(DatasetError, match="cocodataset.org") as error:
        DatasetCatalog.get("coco_2017_train_stuff_sem_seg")
    assert os.path.join(str(tmp_path), "coco", "train2017") in str(error.value)

    write_split(tmp_path, "stuffthingmaps_trainval2017", "train2017", 2)
    with pytest.raises(DatasetError, match="not prepared.*prepare_coco_stuff_164k_sem_seg.py") as error:
        DatasetCatalog.get("coco_2017_train_stuff_sem_seg")
    assert "stuffthingmaps_trainval2017" in str(error.value) and "\n" not in str(error.value)

    write_split(tmp_path, "unused", "val2017", 1)
    with pytest.raises(DatasetError, match="download stuffthingmaps_trainval2017.zip"):
        DatasetCatalog.get("coco_2017_val_stuff_sem_seg")

    write_split(tmp_path, "stuffthingmaps_detectron2", "train2017", 2, masks=False)
    with pytest.raises(DatasetError, match="2 of 2 images.*prepare_coco_stuff_164k_sem_seg.py"):
        DatasetCatalog.get("coco_2017_train_stuff_sem_seg")


def test_coco_synthetic_uses_prepared_convention(tmp_path, monkeypatch):
    root = tmp_path / "COCO_Synthetic"
    for folder in ("images", "annotations"):
        os.makedirs(root / folder)
    mask = np.full((32, 32), 255, np.uint8)
    mask[8:, 8:] = 0
    cv2.imwrite(str(root / "images" / "000000000009_seed_42.jpg"), np.zeros((32, 32, 3), np.uint8))
    cv2.imwrite(str(root / "annotations" / "000000000009_seed_42.png"), mask)
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    (record,) = DatasetCatalog.get("coco_2017_syn_stuff_sem_seg_train")
    assert (record["real_stem"], record["seed"], record["reduce_zero_label"]) == ("000000000009", 42, False)
    out = SemSegDatasetMapper(False, min_size_test=32)(record)
    assert torch.equal(out["sem_seg"], torch.from_numpy(mask.astype(np.int64)))  # 0 stays class 0 (person)
    with pytest.raises(DatasetError, match="COCO-Synthetic"):
        monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "nowhere"))
        DatasetCatalog.get("coco_2017_syn_filtered_stuff_sem_seg_train")
