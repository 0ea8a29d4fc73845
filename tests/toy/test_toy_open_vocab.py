"""The toy's open-vocabulary splits (unseen person and road): written by the ADE20K preparation on the toy tree,
only adding files, registered as toy_ov_* with the records and metadata of contract B."""

import hashlib
import os

import numpy as np
import pytest

from freemask.data.catalog import DatasetCatalog, MetadataCatalog
from freemask.data.mappers.semantic import read_mask
from freemask.toy import generator
from freemask.toy.generator import ToyParams, generate_toy_dataset
from freemask.toy.generator_open_vocab import generate_toy_open_vocab

PARAMS = ToyParams(num_train=6, num_val=3, num_seeds=1, height=64, width=80, seed=1)
BASE = "toy/ADEChallengeData2016"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("datasets"))
    assert generate_toy_dataset(root, PARAMS)
    return root


def tree_hashes(root):
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


def test_open_vocab_files_only_add_to_the_toy(root, tmp_path, monkeypatch):
    """Every file a toy without its open-vocabulary part has is byte-identical in a toy with it."""
    monkeypatch.setattr(generator, "generate_toy_open_vocab", lambda *a, **k: False)
    plain = str(tmp_path / "plain")
    assert generate_toy_dataset(plain, PARAMS)
    monkeypatch.undo()
    before, after = tree_hashes(plain), tree_hashes(root)
    assert {k: after[k] for k in before} == before
    added = sorted(set(after) - set(before))
    assert added and all("_base" in k or "_novel" in k or "annotations_detectron2" in k or "open_vocab" in k
                         for k in added)  # fmt: skip
    assert not generate_toy_dataset(root, PARAMS) and not generate_toy_open_vocab(root, PARAMS)
    assert tree_hashes(root) == after


def test_records_and_metadata(root, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", root)
    train = DatasetCatalog.get("toy_ov_train_base")
    assert len(train) == 6
    assert set(train[0]) == {
        "file_name", "image_id", "height", "width", "sem_seg_file_name", "pan_seg_file_name", "segments_info",
        "reduce_zero_label", "annotation_file",
    }  # fmt: skip
    for record in train:
        assert all(0 <= s["category_id"] < 4 for s in record["segments_info"])
        assert all(s["isthing"] == (s["category_id"] == 3) for s in record["segments_info"])
        labels = np.unique(read_mask(record["sem_seg_file_name"]))
        assert set(labels.tolist()) <= {0, 1, 2, 3, 255}
    meta = MetadataCatalog.get("toy_ov_train_base")
    assert meta.stuff_classes == ["sky", "grass", "building", "car"] and meta.thing_classes == ["car"]
    assert meta.get("trainable_flag") is None

    val = MetadataCatalog.get("toy_ov_val")
    assert val.stuff_classes == ["sky", "grass", "road", "building", "car", "person"]
    assert val.trainable_flag == [1, 1, 0, 1, 1, 0]
    assert val.evaluation_set["base"] == [0, 1, 3, 4]
    assert val.thing_classes == ["car", "person"] and val.thing_dataset_id_to_contiguous_id == {5: 4, 6: 5}
    for key in ("panoptic_json", "panoptic_root", "json_file", "sem_seg_root"):
        assert os.path.exists(val.get(key)), key
    records = DatasetCatalog.get("toy_ov_val")
    assert len(records) == 3 and any(s["category_id"] == 5 for r in records for s in r["segments_info"])


def test_stage1_records(root, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", root)
    stage1 = DatasetCatalog.get("toy_ov_train_base_classification")
    assert {r["category_id"] for r in stage1} <= {0, 1, 2, 3} and len(stage1) >= 6
    for record in stage1[:5]:
        assert (read_mask(record["sem_seg_file_name"]) == record["category_id"]).any()
    val = DatasetCatalog.get("toy_ov_val_classification")
    assert {r["category_id"] for r in val} & {2, 5}  # unseen classes are there to classify at test time
    assert MetadataCatalog.get("toy_ov_val_classification").evaluator_type == "classification"
    assert MetadataCatalog.get("toy_ov_val_classification").trainable_flag == [1, 1, 0, 1, 1, 0]
