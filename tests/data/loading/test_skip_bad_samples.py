"""DATALOADER.SKIP_BAD_SAMPLES: a corrupt training file stops training by default, or is replaced and counted."""

import json
import logging
import os
import shutil

import cv2
import numpy as np
import pytest

from freemask.config import get_cfg
from freemask.data import DatasetCatalog, MetadataCatalog
from freemask.data.errors import DatasetError
from freemask.data.loading.build import MapDataset, build_test_loader, build_train_loader
from freemask.data.mappers.semantic import SemSegDatasetMapper
from freemask.engine.trainer import Trainer

NAME = "fmskip_train"
NUM_IMAGES = 5
BAD = 2


def truncate(path: str) -> None:
    """Keep the first half of a file, as an interrupted copy or download leaves it."""
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])


@pytest.fixture
def bad_split(tmp_path):
    """A registered split of 5 JPEG/PNG pairs whose image number 2 is truncated; yields its records."""
    rng = np.random.default_rng(0)
    records = []
    for i in range(NUM_IMAGES):
        image_path, mask_path = str(tmp_path / f"img_{i}.jpg"), str(tmp_path / f"img_{i}.png")
        cv2.imwrite(image_path, rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))
        cv2.imwrite(mask_path, rng.integers(0, 4, (40, 48), dtype=np.uint8))
        records.append({"file_name": image_path, "sem_seg_file_name": mask_path, "reduce_zero_label": False})
    truncate(records[BAD]["file_name"])
    DatasetCatalog.register(NAME, lambda: records)
    MetadataCatalog.get(NAME).set(stuff_classes=["a", "b", "c", "d"], ignore_label=255, evaluator_type="sem_seg")
    yield records
    DatasetCatalog.remove(NAME)
    MetadataCatalog.remove(NAME)


def loader_cfg(skip: bool, workers: int = 0):
    cfg = get_cfg()
    cfg.DATASETS.TRAIN = [NAME]
    cfg.DATALOADER.SKIP_BAD_SAMPLES = skip
    cfg.DATALOADER.NUM_WORKERS = workers
    cfg.SOLVER.IMS_PER_BATCH = NUM_IMAGES  # one epoch per batch: every batch meets the bad image
    cfg.SEED = 3
    cfg.INPUT.MIN_SIZE_TRAIN = [32, 40]
    cfg.INPUT.CROP.SIZE = [32, 32]
    cfg.INPUT.MIN_SIZE_TEST = 32
    return cfg


def test_bad_sample_stops_training_by_default(bad_split):
    with pytest.raises(DatasetError, match="img_2.jpg.*truncated") as error:
        next(iter(build_train_loader(loader_cfg(skip=False))))
    assert "\n" not in str(error.value)


def test_skipping_loader_yields_full_batches_and_names_the_skipped_file(bad_split):
    bad_name = bad_split[BAD]["file_name"]
    iterator = iter(build_train_loader(loader_cfg(skip=True, workers=2)))
    for _ in range(3):
        batch = next(iterator)
        assert len(batch) == NUM_IMAGES
        assert all(d["image"].shape == (3, 32, 32) and d["sem_seg"].shape == (32, 32) for d in batch)
        assert bad_name not in [d["file_name"] for d in batch]
        marked = [d for d in batch if "skipped" in d]
        assert len(marked) == 1 and marked[0]["skipped"] == [bad_name]
        assert marked[0]["file_name"] == bad_split[BAD + 1]["file_name"]  # the next record took its place


def test_replacement_is_the_next_record_with_the_same_seed(bad_split):
    mapper = SemSegDatasetMapper(True, min_size_train=[40], crop_size=(32, 32))
    dataset = MapDataset(bad_split, mapper, skip_bad_samples=True)
    out = dataset[(BAD, 1234)]
    expected = mapper(bad_split[BAD + 1], np.random.default_rng(1234))
    assert out["skipped"] == [bad_split[BAD]["file_name"]] and out["file_name"] == expected["file_name"]
    assert (out["image"] == expected["image"]).all() and (out["sem_seg"] == expected["sem_seg"]).all()
    assert "skipped" not in dataset[(BAD + 1, 1234)]  # good samples are not marked
    with pytest.raises(DatasetError, match="img_2.jpg"):
        MapDataset(bad_split, mapper)[(BAD, 1234)]  # the default propagates


def test_gives_up_with_the_original_error_when_every_replacement_fails():
    calls = []

    def broken(record, rng):
        calls.append(record["file_name"])
        raise DatasetError(f"{record['file_name']}: image is truncated")

    records = [{"file_name": f"f{i}.jpg"} for i in range(30)]
    with pytest.raises(DatasetError, match=r"^f28\.jpg: image is truncated .*SKIP_BAD_SAMPLES gave up") as error:
        MapDataset(records, broken, skip_bad_samples=True)[(28, 0)]
    assert "\n" not in str(error.value)
    assert calls == [f"f{i % 30}.jpg" for i in range(28, 28 + MapDataset.MAX_SKIPS + 1)]  # wraps around the end


def test_evaluation_never_skips(bad_split):
    loader = build_test_loader(loader_cfg(skip=True), NAME)
    with pytest.raises(DatasetError, match="img_2.jpg"):
        list(loader)


def trainer_cfg(output_dir):
    cfg = get_cfg()
    cfg.merge_from_file(
        os.path.join(
            os.path.dirname(__file__), "..", "..", "..", "configs", "toy", "semantic-segmentation",
            "semantic_fpn_R18_toy.yaml",
        )
    )
    cfg.merge_from_list(
        ["MODEL.DEVICE", "cpu", "SOLVER.IMS_PER_BATCH", "8", "SOLVER.MAX_ITER", "3", "SOLVER.CHECKPOINT_PERIOD", "100"]
        + ["DATALOADER.NUM_WORKERS", "0", "DATALOADER.SKIP_BAD_SAMPLES", "True", "DATASETS.TEST", "()"]
        + ["MODEL.SEM_SEG_HEAD.CONVS_DIM", "32", "MODEL.SEM_SEG_HEAD.HEAD_DIM", "32"]
        + ["OUTPUT_DIR", str(output_dir), "LOG_PERIOD", "1"]
    )
    return cfg


def test_training_runs_past_a_truncated_image_and_counts_it(toy_datasets, tmp_path, monkeypatch):
    root = tmp_path / "datasets"
    shutil.copytree(toy_datasets, root)
    bad = root / "toy" / "ADEChallengeData2016" / "images" / "training" / "toy_train_00003.jpg"
    truncate(str(bad))
    monkeypatch.setenv("DETECTRON2_DATASETS", str(root))
    warnings = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = warnings.append
    logger = logging.getLogger("freemask.engine.trainer")
    logger.addHandler(handler)
    try:
        Trainer(trainer_cfg(tmp_path / "out")).train()  # 8 training images, batch 8: the bad one in every batch
    finally:
        logger.removeHandler(handler)
    with open(tmp_path / "out" / "metrics.json") as f:
        metrics = [json.loads(line) for line in f]
    assert [m["skipped_samples"] for m in metrics] == [1, 2, 3]
    messages = [r.getMessage() for r in warnings if "Skipped training sample" in r.getMessage()]
    assert len(messages) == 1 and str(bad) in messages[0]  # warned once, naming the file


def test_instance_training_skips_and_counts_an_empty_annotation(toy_datasets, tmp_path, monkeypatch):
    """Issue 24: an instance annotation with ``segmentation: []`` is a bad sample like a truncated image."""
    root = tmp_path / "datasets"
    shutil.copytree(toy_datasets, root)
    json_file = root / "toy" / "ADEChallengeData2016" / "ade20k_instance_train.json"
    data = json.loads(json_file.read_text())
    next(a for a in data["annotations"] if not a.get("iscrowd", 0))["segmentation"] = []
    json_file.write_text(json.dumps(data))
    monkeypatch.setenv("DETECTRON2_DATASETS", str(root))
    cfg = get_cfg()
    cfg.merge_from_file(
        os.path.join(
            os.path.dirname(__file__), "..", "..", "..", "configs", "toy", "instance-segmentation",
            "mask2former_R18_toy_instance.yaml",
        )
    )
    cfg.merge_from_list(
        ["MODEL.DEVICE", "cpu", "SOLVER.IMS_PER_BATCH", "8", "SOLVER.MAX_ITER", "2", "DATALOADER.NUM_WORKERS", "0",
         "DATALOADER.SKIP_BAD_SAMPLES", "True", "DATASETS.TEST", "()", "INPUT.CROP.SIZE", "[64, 64]",
         "INPUT.MIN_SIZE_TRAIN", "(64,)", "OUTPUT_DIR", str(tmp_path / "out"), "LOG_PERIOD", "1"]
    )  # fmt: skip
    Trainer(cfg).train()  # 8 training images, batch 8: the bad one in every batch
    with open(tmp_path / "out" / "metrics.json") as f:
        assert [json.loads(line)["skipped_samples"] for line in f] == [1, 2]
