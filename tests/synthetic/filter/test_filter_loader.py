"""The filter's loader: records shared through a RecordBuffer, workers started by the chosen method, items equal to
those read from the plain list of records in this process."""

import logging

import cv2
import numpy as np
import pytest
import torch

from freemask.data.loading.record_buffer import RecordBuffer
from freemask.synthetic.filter.batches import PairReader, make_loader


def pairs(tmp_path, count):
    rng = np.random.default_rng(0)
    records = []
    for i in range(count):
        image, mask = tmp_path / f"{i}.png", tmp_path / f"{i}_mask.png"
        cv2.imwrite(str(image), rng.integers(0, 256, (6 + i, 9, 3), dtype=np.uint8))
        cv2.imwrite(str(mask), rng.integers(0, 4, (6 + i, 9), dtype=np.uint8))
        records.append({"file_name": str(image), "sem_seg_file_name": str(mask), "reduce_zero_label": bool(i % 2)})
    return records


def test_without_workers_the_reader_reads_its_list_in_process(tmp_path):
    reader = PairReader(pairs(tmp_path, 2), num_classes=4, ignore_label=255, keep_raw=False)
    loader = make_loader(reader, [[0, 1]], num_workers=0, pin_memory=False)
    assert loader.dataset is reader and loader.multiprocessing_context is None
    assert [item["index"] for item in next(iter(loader))] == [0, 1]


@pytest.mark.parametrize("start_method", ["fork", "forkserver"])
def test_worker_items_equal_the_in_process_items_of_the_plain_list(tmp_path, caplog, start_method):
    records = pairs(tmp_path, 5)
    reader = PairReader(records, num_classes=4, ignore_label=255, keep_raw=True)
    batches = [[3, 0], [4], [1, 2]]
    with caplog.at_level(logging.INFO, logger="freemask.data"):
        loader = make_loader(reader, batches, num_workers=2, pin_memory=False, start_method=start_method)
        loaded = list(loader)
    assert isinstance(loader.dataset.records, RecordBuffer) and reader.records is records
    assert any(f"Filter loader: 2 workers started by {start_method}" in r.getMessage() for r in caplog.records)
    reference = reader  # the same reading over the list itself, in this process
    for batch, items in zip(batches, loaded):
        assert [item["index"] for item in items] == batch
        for item in items:
            want = reference[item["index"]]
            assert list(item) == list(want)
            assert torch.equal(item["image"], want["image"]) and torch.equal(item["labels"], want["labels"])
            assert np.array_equal(item["raw"], want["raw"])
