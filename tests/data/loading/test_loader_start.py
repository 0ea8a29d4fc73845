"""The loaders' records in a shared buffer and their workers' start method: batches under fork, forkserver and spawn
equal those of today's plain list of records, the list is not kept, DATALOADER.START_METHOD is checked and logged."""

import gc
import itertools
import logging
import weakref

import numpy as np
import pytest
import torch

from freemask.config import ConfigError, get_cfg
from freemask.data import DatasetCatalog, MetadataCatalog
from freemask.data.loading.build import build_test_loader, build_train_loader
from freemask.data.loading.record_buffer import RecordBuffer
from freemask.data.loading.synthetic_records import SyntheticRecords
from freemask.data.mappers.build import build_mapper

REAL, SYN, VAL = "toy_sem_seg_train", "toy_syn_sem_seg_train", "toy_sem_seg_val"


@pytest.fixture
def toy(toy_datasets, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", toy_datasets)


def toy_cfg(workers=0, start_method=""):
    cfg = get_cfg()
    cfg.DATASETS.TRAIN, cfg.DATASETS.TRAIN_SYN = [REAL], [SYN]
    cfg.DATALOADER.SYN_RATIO = 0.5
    cfg.DATALOADER.NUM_WORKERS = workers
    cfg.DATALOADER.START_METHOD = start_method
    cfg.SOLVER.IMS_PER_BATCH = 4
    cfg.SEED = 3
    cfg.INPUT.MIN_SIZE_TRAIN = [48, 64, 80]
    cfg.INPUT.MAX_SIZE_TRAIN = 160
    cfg.INPUT.CROP.SIZE = [48, 48]
    cfg.INPUT.MIN_SIZE_TEST = 64
    cfg.INPUT.MAX_SIZE_TEST = 128
    return cfg


def assert_same_batches(batches, reference):
    """Every item the same keys, the same values, tensors of the same dtype and bytes."""
    assert len(batches) == len(reference)
    for batch, expected in zip(batches, reference):
        assert len(batch) == len(expected)
        for item, want in zip(batch, expected):
            assert list(item) == list(want)
            for key, value in want.items():
                if isinstance(value, torch.Tensor):
                    assert item[key].dtype == value.dtype and torch.equal(item[key], value), key
                else:
                    assert item[key] == value, key


@pytest.mark.parametrize("start_method", ["fork", "forkserver", "spawn"])
def test_training_batches_under_each_start_method_equal_the_plain_list_ones(toy, caplog, start_method):
    cfg = toy_cfg(workers=2, start_method=start_method)
    # Today's loader, independently: the catalog's list of dicts mapped in this process, keys from the sampler.
    records = DatasetCatalog.get(REAL) + DatasetCatalog.get(SYN)
    mapper = build_mapper(cfg, is_train=True)
    keys = list(itertools.islice(iter(build_train_loader(toy_cfg()).batch_sampler), 3))
    reference = [[mapper(dict(records[i]), np.random.default_rng(seed)) for i, seed in batch] for batch in keys]
    with caplog.at_level(logging.INFO, logger="freemask.data"):
        loader = build_train_loader(cfg)
        batches = list(itertools.islice(iter(loader), 3))
    # TRAIN as a RecordBuffer, the synthetic split in its compact form: no list of its dicts was built.
    assert [type(part) for part in loader.dataset.records.parts] == [RecordBuffer, SyntheticRecords]
    assert loader.multiprocessing_context.get_start_method() == start_method
    assert_same_batches(batches, reference)
    started = [r.getMessage() for r in caplog.records if "workers started by" in r.getMessage()]
    assert started == [f"Training loader: 2 workers started by {start_method} (DATALOADER.START_METHOD)"]


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_plain_mixing_with_a_compact_synthetic_split_equals_the_plain_list(toy, start_method):
    """SYN_RATIO 0: TRAIN and TRAIN_SYN indexed as one concatenated list (the synthetic records after the real ones),
    here across a RecordBuffer and a compact synthetic split; with SKIP_BAD_SAMPLES, whose ``(index + k) % n``
    reads past the end of the chain."""
    cfg = toy_cfg(workers=2, start_method=start_method)
    cfg.DATALOADER.SYN_RATIO = 0.0
    cfg.DATALOADER.SKIP_BAD_SAMPLES = True
    records = DatasetCatalog.get(REAL) + DatasetCatalog.get(SYN)
    mapper = build_mapper(cfg, is_train=True)
    serial = toy_cfg()
    serial.DATALOADER.SYN_RATIO = 0.0
    keys = list(itertools.islice(iter(build_train_loader(serial).batch_sampler), 4))
    assert any(i >= len(DatasetCatalog.get(REAL)) for batch in keys for i, _ in batch)  # synthetic records are read
    reference = [[mapper(dict(records[i]), np.random.default_rng(seed)) for i, seed in batch] for batch in keys]
    loader = build_train_loader(cfg)
    assert [type(part) for part in loader.dataset.records.parts] == [RecordBuffer, SyntheticRecords]
    assert_same_batches(list(itertools.islice(iter(loader), 4)), reference)
    chain, last = loader.dataset.records, len(records) - 1
    assert chain[last] == records[last] and chain[(last + 1) % len(chain)] == records[0]


def test_test_loader_items_equal_the_plain_list_ones_with_the_default_method(toy, caplog):
    cfg = toy_cfg(workers=2)
    records = DatasetCatalog.get(VAL)
    mapper = build_mapper(cfg, is_train=False)
    reference = [[mapper(dict(record), None)] for record in records]
    with caplog.at_level(logging.INFO, logger="freemask.data"):
        batches = list(build_test_loader(cfg, VAL))
    assert_same_batches(batches, reference)
    assert any(f"Test ({VAL}) loader: 2 workers started by fork (the default" in r.getMessage() for r in caplog.records)


class Record(dict):
    """A record dict that a weak reference can watch."""


def test_the_rank_keeps_no_record_dict_once_the_loader_is_built(tmp_path):
    alive = []

    def load(prefix, count):
        records = [Record(file_name=f"{tmp_path}/{prefix}{i}.jpg", sem_seg_file_name=f"{tmp_path}/{prefix}{i}.png")
                   for i in range(count)]  # fmt: skip
        alive.extend(weakref.ref(r) for r in records)
        return records

    names = {"fmrecords_real": 3, "fmrecords_syn": 4}
    for name, count in names.items():
        DatasetCatalog.register(name, lambda name=name, count=count: load(name, count))
        MetadataCatalog.get(name).set(stuff_classes=["a", "b"], ignore_label=255, evaluator_type="sem_seg")
    try:
        cfg = toy_cfg()
        cfg.DATASETS.TRAIN, cfg.DATASETS.TRAIN_SYN = ["fmrecords_real"], ["fmrecords_syn"]
        loader = build_train_loader(cfg)
        gc.collect()
        assert len(alive) == 7 and not [ref for ref in alive if ref() is not None]
        assert [r["file_name"] for r in loader.dataset.records][-1].endswith("fmrecords_syn3.jpg")
    finally:
        for name in names:
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)


@pytest.mark.parametrize("workers", [0, 2])
def test_an_unknown_start_method_is_one_line_naming_the_key(toy, workers):
    with pytest.raises(ConfigError) as error:
        build_train_loader(toy_cfg(workers=workers, start_method="thread"))
    message = str(error.value)
    assert "DATALOADER.START_METHOD" in message and "'thread'" in message and "fork, forkserver, spawn" in message
    assert "\n" not in message
