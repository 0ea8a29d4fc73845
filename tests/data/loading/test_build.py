"""Dataset wrapper and the training / test loaders on a tiny dataset written to disk."""

import itertools
import logging

import cv2
import numpy as np
import pytest
import torch

from freemask.config import ConfigError, get_cfg
from freemask.data import DatasetCatalog, MetadataCatalog
from freemask.data.errors import DatasetError
from freemask.data.loading.build import MapDataset, build_test_loader, build_train_loader

SIZES = {"fmtest_real": 3, "fmtest_syn": 5, "fmtest_empty": 0}


def _write_dataset(root, name, n):
    rng = np.random.default_rng(len(name) + n)
    records = []
    for i in range(n):
        h, w = 40 + 4 * i, 56
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        mask = rng.integers(0, 4, (h, w), dtype=np.uint8)
        ext = "jpg" if i % 2 else "png"
        image_path, mask_path = root / f"{name}_{i}.{ext}", root / f"{name}_{i}_mask.png"
        cv2.imwrite(str(image_path), image)
        cv2.imwrite(str(mask_path), mask)
        records.append({"file_name": str(image_path), "sem_seg_file_name": str(mask_path), "reduce_zero_label": True})
    return records


@pytest.fixture
def datasets(tmp_path):
    for name, n in SIZES.items():
        records = _write_dataset(tmp_path, name, n)
        DatasetCatalog.register(name, lambda records=records: records)
        MetadataCatalog.get(name).set(stuff_classes=["a", "b", "c"], ignore_label=255, evaluator_type="sem_seg")
    yield
    for name in SIZES:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def _cfg(**overrides):
    cfg = get_cfg()
    cfg.DATASETS.TRAIN = ["fmtest_real"]
    cfg.DATASETS.TRAIN_SYN = ["fmtest_syn"]
    cfg.DATALOADER.SYN_RATIO = 0.5
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SOLVER.IMS_PER_BATCH = 4
    cfg.SEED = 7
    cfg.INPUT.MIN_SIZE_TRAIN = [32, 40, 48]
    cfg.INPUT.MAX_SIZE_TRAIN = 128
    cfg.INPUT.CROP.SIZE = [32, 32]
    cfg.INPUT.MIN_SIZE_TEST = 32
    cfg.INPUT.MAX_SIZE_TEST = 128
    for key, value in overrides.items():
        node = cfg
        *parents, leaf = key.split(".")
        for parent in parents:
            node = node[parent]
        node[leaf] = value
    return cfg


def _take(loader, n):
    return list(itertools.islice(iter(loader), n))


def _same(a, b):
    return len(a) == len(b) and all(
        x["file_name"] == y["file_name"]
        and torch.equal(x["image"], y["image"])
        and torch.equal(x["sem_seg"], y["sem_seg"])
        for x, y in zip(a, b)
    )


def test_map_dataset_passes_seeded_rng_for_training_and_none_for_testing():
    calls = []

    def mapper(record, rng):
        calls.append(rng)
        return {"record": record, "draw": None if rng is None else int(rng.integers(1 << 30))}

    dataset = MapDataset([{"id": 0}, {"id": 1}], mapper)
    assert len(dataset) == 2
    first, again, other = dataset[(1, 123)], dataset[(1, 123)], dataset[(1, 124)]
    assert first["record"] == {"id": 1} and first["draw"] == again["draw"] != other["draw"]
    assert dataset[0] == {"record": {"id": 0}, "draw": None} and calls[-1] is None


def test_joint_train_loader_batches_and_composition(datasets, caplog):
    with caplog.at_level(logging.INFO, logger="freemask.data.loading.build"):
        batches = _take(build_train_loader(_cfg()), 6)
    for batch in batches:
        assert isinstance(batch, list) and len(batch) == 4
        assert sum("fmtest_syn" in d["file_name"] for d in batch) == 2
        for d in batch:
            assert d["image"].dtype == torch.uint8 and d["image"].shape == (3, 32, 32)
            assert d["sem_seg"].dtype == torch.uint8 and d["sem_seg"].shape == (32, 32)
    real_seen = {d["file_name"] for batch in batches for d in batch if "fmtest_real" in d["file_name"]}
    assert len(real_seen) == 3  # 12 real draws over 3 real images: 4 full epochs
    messages = [r.getMessage() for r in caplog.records]
    assert any("3 real, 5 synthetic" in m and "2 of 4" in m for m in messages), messages


def test_train_loader_resume_reproduces_uninterrupted_run(datasets):
    full = _take(build_train_loader(_cfg()), 5)
    resumed = _take(build_train_loader(_cfg(), start_iter=3), 2)
    assert _same(full[3] + full[4], resumed[0] + resumed[1])
    assert not _same(full[0], _take(build_train_loader(_cfg(SEED=8)), 1)[0])


def test_train_loader_same_batches_with_worker_processes(datasets):
    in_process = _take(build_train_loader(_cfg()), 3)
    loader = build_train_loader(_cfg(**{"DATALOADER.NUM_WORKERS": 2}))
    assert loader.persistent_workers
    assert _same(sum(in_process, []), sum(_take(loader, 3), []))


def test_plain_train_loader_uses_repeat_factors(datasets):
    cfg = _cfg(**{"DATALOADER.SYN_RATIO": 0.0, "DATASETS.REPEAT_FACTORS": [2, 1], "SOLVER.IMS_PER_BATCH": 11})
    (batch,) = _take(build_train_loader(cfg), 1)  # one epoch: 3 real x2 + 5 synthetic
    names = sorted(d["file_name"].rsplit("/", 1)[-1] for d in batch)
    assert sum(n.startswith("fmtest_real") for n in names) == 6 and len(set(names)) == 8


@pytest.mark.parametrize(
    "overrides,error,match",
    [
        ({"DATASETS.TRAIN_SYN": []}, ConfigError, "DATASETS.TRAIN_SYN"),
        ({"DATASETS.REPEAT_FACTORS": [1]}, ConfigError, "REPEAT_FACTORS"),
        ({"DATALOADER.SYN_RATIO": 1.0}, ConfigError, "SYN_RATIO"),
        ({"DATASETS.TRAIN": [], "DATASETS.TRAIN_SYN": []}, ConfigError, "DATASETS.TRAIN"),
        (
            {"DATASETS.TRAIN": ["fmtest_real", "fmtest_empty"], "DATASETS.REPEAT_FACTORS": []},
            DatasetError,
            "fmtest_empty",
        ),
        ({"SOLVER.IMS_PER_BATCH": 1}, ValueError, "synthetic images per batch"),
    ],
)
def test_train_loader_config_errors(datasets, overrides, error, match):
    with pytest.raises(error, match=match) as info:
        build_train_loader(_cfg(**overrides))
    assert "\n" not in str(info.value)


def test_test_loader_yields_every_image_once_at_original_resolution(datasets):
    loader = build_test_loader(_cfg(), "fmtest_syn")
    batches = list(loader)
    records = DatasetCatalog.get("fmtest_syn")
    assert [len(b) for b in batches] == [1] * len(records) == [1] * 5
    for batch, record in zip(batches, records):
        d = batch[0]
        assert d["file_name"] == record["file_name"]
        h0 = cv2.imread(record["file_name"]).shape[0]
        assert (d["height"], d["width"]) == (h0, 56) and d["sem_seg"].shape == (h0, 56)
        assert min(d["image"].shape[1:]) == 32
    with pytest.raises(DatasetError, match="fmtest_empty"):
        build_test_loader(_cfg(), "fmtest_empty")


def test_training_drops_instance_images_with_only_crowd_objects(caplog):
    """DATALOADER.FILTER_EMPTY_ANNOTATIONS (detectron2's rule): an instance record whose annotations are all crowd,
    or empty, never reaches training; semantic / panoptic records (no "annotations") always do."""
    from freemask.data.loading.build import _drop_images_without_objects

    records = [
        {"file_name": "a.jpg", "annotations": [{"iscrowd": 1}, {"iscrowd": 0}]},
        {"file_name": "b.jpg", "annotations": [{"iscrowd": 1}]},
        {"file_name": "c.jpg", "annotations": []},
        {"file_name": "d.jpg", "sem_seg_file_name": "d.png"},
        {"file_name": "e.jpg", "segments_info": []},
    ]
    with caplog.at_level(logging.INFO, logger="freemask"):
        kept = _drop_images_without_objects(records, "my_instances")
    assert [r["file_name"] for r in kept] == ["a.jpg", "d.jpg", "e.jpg"]
    assert "Removed 2 images of my_instances" in caplog.text
    with pytest.raises(DatasetError, match="FILTER_EMPTY_ANNOTATIONS False"):
        _drop_images_without_objects(records[1:3], "my_instances")
