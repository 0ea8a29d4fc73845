"""Stage-1 records from label counts (and FreeSeg's full-task ones from panoptic records), and
DATASETS.SAMPLE_PER_CLASS: at most N per class (per task and class where records name a task), without replacement,
the same selection for the same seed whatever the process, applied where training sets are built."""

import json
import pathlib

import pytest

from freemask.config import ConfigError, get_cfg
from freemask.data.catalog import DatasetCatalog
from freemask.data.datasets.classification import (
    full_task_classification_records,
    label_count_path,
    load_classification_records,
    sample_per_class,
)
from freemask.data.errors import DatasetError
from freemask.data.loading.build import build_train_loader


@pytest.fixture
def split(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for stem in ("b", "a", "c"):
        (images / f"{stem}.jpg").write_bytes(b"")
        (masks / f"{stem}.png").write_bytes(b"")
    counts = {"b.png": [2, 0], "a.png": [1], "c.png": []}
    pathlib.Path(label_count_path(str(masks))).write_text(json.dumps(counts))
    return images, masks


def test_records_per_image_and_class(split):
    images, masks = split
    assert label_count_path(str(masks) + "/") == str(masks) + "_label_count.json"
    records = load_classification_records(str(images), str(masks), num_classes=3)
    assert [(pathlib.Path(r["file_name"]).name, r["category_id"]) for r in records] == [
        ("a.jpg", 1), ("b.jpg", 2), ("b.jpg", 0)
    ]  # fmt: skip
    assert records[0]["sem_seg_file_name"] == str(masks / "a.png") and records[0]["reduce_zero_label"] is False


def test_record_errors_name_the_file_and_the_command(split):
    images, masks = split
    with pytest.raises(DatasetError, match="lists class 2, not one of the split's 2 classes.*run X"):
        load_classification_records(str(images), str(masks), num_classes=2, hint="run X")
    (images / "a.jpg").unlink()
    with pytest.raises(DatasetError, match=r"lists a.png, but .*images/a.jpg does not exist"):
        load_classification_records(str(images), str(masks), num_classes=3)
    pathlib.Path(label_count_path(str(masks))).unlink()
    with pytest.raises(DatasetError, match=r"label counts not found: .*masks_label_count.json; write them with run X"):
        load_classification_records(str(images), str(masks), num_classes=3, hint="run X")


def records_of(counts):
    return [{"file_name": f"{c}_{i}", "category_id": c} for c, n in counts.items() for i in range(n)]


def test_sample_per_class_caps_without_replacement():
    records = records_of({0: 50, 1: 3, 2: 10})
    kept = sample_per_class(records, 5, seed=0)
    per_class = {c: [r["file_name"] for r in kept if r["category_id"] == c] for c in (0, 1, 2)}
    assert {c: len(v) for c, v in per_class.items()} == {0: 5, 1: 3, 2: 5}
    assert all(len(set(v)) == len(v) for v in per_class.values())  # no sample twice
    assert kept == [r for r in records if r in kept]  # dataset order kept
    assert sample_per_class(records, 5, seed=0) == kept  # the same on every process
    assert sample_per_class(records, 5, seed=1) != kept
    assert sample_per_class(records, -1, seed=0) == records


def test_full_task_records_and_their_sampling_per_task():
    """bytedance/FreeSeg, register_coco_full.py, load_full_binary_mask: semantic records, then one instance record
    per non-crowd thing segment, then one panoptic record per non-crowd segment; sampled per task and class
    (mask2former/data/build.py, dataset_sample_per_task_class)."""
    semantic = [{"file_name": "a.jpg", "sem_seg_file_name": "a.png", "category_id": c} for c in (0, 2)]
    segments = [
        {"id": 5, "category_id": 0, "isthing": True, "iscrowd": 0},
        {"id": 6, "category_id": 0, "isthing": True, "iscrowd": 1},  # crowd: no record
        {"id": 9, "category_id": 2, "isthing": False, "iscrowd": 0},  # stuff: panoptic only
    ]
    panoptic = [{"file_name": "a.jpg", "pan_seg_file_name": "a_pan.png", "segments_info": segments}]
    records = full_task_classification_records(semantic, panoptic)
    assert [(r["task"], r["category_id"], r.get("segment_id")) for r in records] == [
        ("sem_seg", 0, None), ("sem_seg", 2, None), ("ins_seg", 0, 5), ("pan_seg", 0, 5), ("pan_seg", 2, 9)
    ]  # fmt: skip
    assert records[2]["pan_seg_file_name"] == "a_pan.png" and records[2]["segments_info"] is segments
    # Capped per (task, class): one of each of the five groups survives a cap of 1, even though three are class 0.
    many = records * 3
    kept = sample_per_class(many, 1, seed=0)
    assert sorted((r["task"], r["category_id"]) for r in kept) == sorted((r["task"], r["category_id"]) for r in records)


def test_sample_per_class_is_a_uniform_draw():
    """Each of 20 records of a class is kept with probability 4/20 over seeds (not always the first ones)."""
    records = records_of({0: 20})
    hits = [0] * 20
    for seed in range(500):
        for r in sample_per_class(records, 4, seed):
            hits[int(r["file_name"].split("_")[1])] += 1
    assert min(hits) > 60 and max(hits) < 140  # expected 100 each


def test_build_train_loader_samples_stage1_sets(split, monkeypatch):
    images, masks = split
    monkeypatch.setattr(
        DatasetCatalog, "get", lambda name: load_classification_records(str(images), str(masks), 3) * 4
    )  # 12 records: class 0 x4, 1 x4, 2 x4

    def fake_mapper(cfg, is_train):
        return lambda record, rng: record

    monkeypatch.setattr("freemask.data.loading.build.build_mapper", fake_mapper)
    cfg = get_cfg()
    cfg.DATASETS.TRAIN = ["stage1"]
    cfg.DATASETS.SAMPLE_PER_CLASS = 2
    cfg.SOLVER.IMS_PER_BATCH = 1
    cfg.DATALOADER.NUM_WORKERS = 0
    kept = build_train_loader(cfg).dataset.records
    assert len(kept) == 6 and sorted(r["category_id"] for r in kept) == [0, 0, 1, 1, 2, 2]
    monkeypatch.setattr(DatasetCatalog, "get", lambda name: [{"file_name": "x", "sem_seg_file_name": "y"}])
    with pytest.raises(ConfigError, match="SAMPLE_PER_CLASS 2 samples stage-1 records.*'stage1'.*_classification"):
        build_train_loader(cfg)
