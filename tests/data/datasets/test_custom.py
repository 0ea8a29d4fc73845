"""A dataset of the user's own from DATASETS.CUSTOM: class file checks, idempotent registration, clashes."""

import os

import cv2
import numpy as np
import pytest

from freemask.config import ConfigError, get_cfg
from freemask.data.catalog import DatasetCatalog, MetadataCatalog
from freemask.data.datasets import register_custom_from_config
from freemask.data.datasets.custom import read_class_names
from freemask.data.errors import DatasetError
from freemask.data.mappers.semantic import SemSegDatasetMapper


@pytest.fixture
def cleanup():
    """Names registered by a test, removed afterwards so other tests start from the builtin catalog."""
    names = []
    yield names
    for name in names:
        if name in DatasetCatalog:
            DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def make_dataset(root, classes=("road", "car", "tree")):
    for split, count in (("training", 2), ("validation", 1)):
        os.makedirs(root / "images" / split)
        os.makedirs(root / "annotations" / split)
        for i in range(count):
            cv2.imwrite(str(root / "images" / split / f"img{i}.png"), np.zeros((32, 32, 3), np.uint8))
            mask = np.full((32, 32), 2, np.uint8)
            mask[:8] = 0
            cv2.imwrite(str(root / "annotations" / split / f"img{i}.tif"), mask)
    classes_file = root / "classes.txt"
    classes_file.write_text("".join(f"{c}\n" for c in classes) + "\n", encoding="utf-8")
    return classes_file


def custom_cfg(name, root, classes_file, **overrides):
    cfg = get_cfg()
    cfg.DATASETS.CUSTOM.NAME = name
    cfg.DATASETS.CUSTOM.ROOT = str(root)
    cfg.DATASETS.CUSTOM.CLASSES_FILE = str(classes_file)
    cfg.DATASETS.CUSTOM.IMAGE_EXT = ".png"
    cfg.DATASETS.CUSTOM.MASK_EXT = ".tif"
    for key, value in overrides.items():
        cfg.DATASETS.CUSTOM[key] = value
    return cfg


def test_registers_train_and_val_from_config(tmp_path, cleanup):
    classes_file = make_dataset(tmp_path)
    cfg = custom_cfg("test_custom_streets", tmp_path, classes_file, REDUCE_ZERO_LABEL=True)
    names = register_custom_from_config(cfg)
    cleanup.extend(names)
    assert names == ["test_custom_streets_sem_seg_train", "test_custom_streets_sem_seg_val"]
    assert register_custom_from_config(cfg) == names  # same settings again: no error
    train, val = DatasetCatalog.get(names[0]), DatasetCatalog.get(names[1])
    assert (len(train), len(val)) == (2, 1) and all(r["reduce_zero_label"] for r in train + val)
    assert train[1]["sem_seg_file_name"] == os.path.join(str(tmp_path), "annotations", "training", "img1.tif")
    meta = MetadataCatalog.get(names[1])
    assert meta.stuff_classes == ["road", "car", "tree"] and meta.ignore_label == 255 and len(meta.stuff_colors) == 3
    assert meta.image_root == os.path.join(str(tmp_path), "images", "validation")
    out = SemSegDatasetMapper(False, min_size_test=32)(val[0])
    assert set(out["sem_seg"].unique().tolist()) == {1, 255}  # raw 2 -> car, raw 0 -> ignore

    changed = custom_cfg("test_custom_streets", tmp_path, classes_file, REDUCE_ZERO_LABEL=False)
    with pytest.raises(ConfigError, match="already registered with other DATASETS.CUSTOM settings"):
        register_custom_from_config(changed)
    (tmp_path / "classes.txt").write_text("road\ncar\ntree\nsky\n")
    with pytest.raises(ConfigError, match="already registered"):
        register_custom_from_config(cfg)  # the class file changed on disk


def test_relative_root_is_fixed_at_registration(tmp_path, cleanup, monkeypatch):
    classes_file = make_dataset(tmp_path)
    monkeypatch.chdir(tmp_path.parent)
    names = register_custom_from_config(custom_cfg("test_custom_relative", tmp_path.name, classes_file))
    cleanup.extend(names)
    monkeypatch.chdir(tmp_path / "images")
    assert len(DatasetCatalog.get(names[0])) == 2


def test_empty_name_registers_nothing():
    before = set(DatasetCatalog.list())
    assert register_custom_from_config(get_cfg()) == []
    assert set(DatasetCatalog.list()) == before


def test_class_file_errors(tmp_path):
    path = tmp_path / "classes.txt"
    with pytest.raises(DatasetError, match="not found") as error:
        read_class_names(str(path))
    assert str(path) in str(error.value)
    with pytest.raises(ConfigError, match="CLASSES_FILE is empty"):
        read_class_names("")
    cases = {
        "\n\n": "is empty",
        "road\ncar\n road \n": r":3: class 'road' already named on line 1",
        "road\n\ncar\n": ":2: blank class name",
    }
    for text, message in cases.items():
        path.write_text(text, encoding="utf-8")
        with pytest.raises(DatasetError, match=message) as error:
            read_class_names(str(path))
        assert "\n" not in str(error.value)
    path.write_text("wall\n chest of drawers \r\nsky\n\n", encoding="utf-8")
    assert read_class_names(str(path)) == ["wall", "chest of drawers", "sky"]


def test_config_errors(tmp_path):
    classes_file = make_dataset(tmp_path)
    with pytest.raises(ConfigError, match="ROOT is empty"):
        register_custom_from_config(custom_cfg("test_custom_bad", "", classes_file))
    with pytest.raises(ConfigError, match="IGNORE_LABEL 2 must be in 3..255"):
        register_custom_from_config(custom_cfg("test_custom_bad", tmp_path, classes_file, IGNORE_LABEL=2))
    with pytest.raises(ConfigError, match="MASK_EXT must start with '.'"):
        register_custom_from_config(custom_cfg("test_custom_bad", tmp_path, classes_file, MASK_EXT="png"))
    with pytest.raises(ConfigError, match="'ade20k_sem_seg_train', which is already a registered dataset"):
        register_custom_from_config(custom_cfg("ade20k", tmp_path, classes_file))
    assert "test_custom_bad_sem_seg_train" not in DatasetCatalog
    assert MetadataCatalog.get("ade20k_sem_seg_train").stuff_classes[0] == "wall"  # the builtin is untouched
