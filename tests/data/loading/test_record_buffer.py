"""RecordBuffer: every record kind the project produces comes back equal (same key order and types), pickling for a
worker passes a handle rather than the records, and list-like indexing."""

import pickle
from multiprocessing.reduction import ForkingPickler

import numpy as np
import pytest

from freemask.data import DatasetCatalog
from freemask.data.loading import record_buffer
from freemask.data.loading.record_buffer import RecordBuffer

TOY_SPLITS = [
    "toy_sem_seg_train",  # semantic: file_name, sem_seg_file_name, reduce_zero_label
    "toy_syn_sem_seg_train",  # synthetic: + real_stem, seed
    "toy_panoptic_train",  # panoptic: segments_info (dicts with bbox lists, isthing bools)
    "toy_instance_train",  # instance: annotations with RLE dicts, float boxes, bbox_mode strings
    "toy_ov_train_classification",  # stage 1: one record per (image, class), category_id
    "toy_ov_train_base",  # open-vocabulary panoptic
]

HAND_MADE = [
    {  # COCO instance record: polygons (nested lists of floats), an RLE with bytes counts, crowd
        "file_name": "/data/coco/train2017/000000000009.jpg",
        "height": 480,
        "width": 640,
        "image_id": 9,
        "annotations": [
            {
                "iscrowd": 0,
                "bbox": [1.08, 187.69, 611.59, 285.84],
                "category_id": 50,
                "bbox_mode": "XYWH_ABS",
                "segmentation": [[500.49, 473.53, 599.73, 419.6, 612.67, 375.37], [1.0, 2.0, 3.5, 4.0, 5.0, 6.0]],
            },
            {
                "iscrowd": 1,
                "bbox": [0.0, 0.0, 5.0, 5.0],
                "category_id": 1,
                "bbox_mode": "XYWH_ABS",
                "segmentation": {"size": [480, 640], "counts": b"\x00\x01binary"},
            },
        ],
    },
    {
        "file_name": "relative/name.jpg",
        "sem_seg_file_name": "name.png",
        "extra": None,
        "weights": (0.5, 1),
        "nested": {"deeper": {"list": [[], [{}], {"k": "/a/b/"}]}},
        3: "non-string key",
        "path_like": "/",
    },
    {},
    {"flat": "/a/b.jpg", "folder": "/a/", "root": "/", "name": "b.jpg", "n": 1, "x": 0.5, "yes": True, "none": None},
    ("a", "tuple", "record"),
    ["a", "list", "record"],
    {"file_name": "/x/y.jpg", "numpy_scalar": np.int64(7), "array": np.arange(3, dtype=np.uint8)},
]


def assert_same(decoded, original):
    """== plus the same key order and the same type at every level (== alone takes 1 == 1.0 == True)."""
    assert type(decoded) is type(original)
    if isinstance(original, dict):
        assert list(decoded) == list(original)
        for key in original:
            assert_same(decoded[key], original[key])
    elif isinstance(original, (list, tuple)):
        assert len(decoded) == len(original)
        for a, b in zip(decoded, original):
            assert_same(a, b)
    elif isinstance(original, np.ndarray):
        assert decoded.dtype == original.dtype and np.array_equal(decoded, original)
    else:
        assert decoded == original


@pytest.mark.parametrize("split", TOY_SPLITS)
def test_every_toy_record_kind_round_trips(toy_datasets, monkeypatch, split):
    monkeypatch.setenv("DETECTRON2_DATASETS", toy_datasets)
    records = DatasetCatalog.get(split)
    buffer = RecordBuffer(records)
    assert len(buffer) == len(records) > 0
    for i, record in enumerate(records):
        assert_same(buffer[i], record)
    assert_same(list(buffer), records)
    assert buffer[0] is not buffer[0]  # a new dict each time: a mapper may change it


def test_hand_made_records_round_trip_with_their_types():
    buffer = RecordBuffer(HAND_MADE)
    assert_same([buffer[i] for i in range(len(HAND_MADE))], HAND_MADE)
    assert_same(list(buffer), HAND_MADE)


def test_indexing_like_a_list():
    records = [{"i": i} for i in range(5)]
    buffer = RecordBuffer(records)
    assert buffer[-1] == records[-1] and buffer[-5] == records[0] and buffer[np.int64(2)] == records[2]
    assert buffer[1:4] == records[1:4] and buffer[::-2] == records[::-2]
    for bad in (5, -6, 100):
        with pytest.raises(IndexError):
            buffer[bad]
    with pytest.raises(TypeError):
        buffer["0"]
    assert len(RecordBuffer([])) == 0 and list(RecordBuffer([])) == []
    assert {"i": 3} in buffer and buffer.index({"i": 4}) == 4


def synthetic_records(n):
    root = "/datasets/ADE20K_Synthetic"
    return [
        {
            "file_name": f"{root}/images/ADE_train_{i // 20:08d}_seed_{42 + i % 20}.jpg",
            "sem_seg_file_name": f"{root}/annotations/ADE_train_{i // 20:08d}_seed_{42 + i % 20}.png",
            "reduce_zero_label": True,
            "real_stem": f"ADE_train_{i // 20:08d}",
            "seed": 42 + i % 20,
        }
        for i in range(n)
    ]


def test_a_worker_receives_a_handle_not_the_records():
    """What multiprocessing sends a spawned or forkserver worker: torch's reductions pass the shared memory."""
    small, large = RecordBuffer(synthetic_records(10)), RecordBuffer(synthetic_records(10_000))
    assert large.nbytes > 500_000
    sent = ForkingPickler.dumps(large)
    assert len(sent) < 4096 and len(sent) - len(ForkingPickler.dumps(small)) < 64
    received = pickle.loads(sent)
    assert received[1234] == synthetic_records(1235)[1234] and len(received) == 10_000
    assert received._data.is_shared() and received._offsets.is_shared()


def test_storage_is_compact_and_tables_stay_bounded(monkeypatch):
    records = synthetic_records(2000)
    buffer = RecordBuffer(records)
    plain = sum(len(pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL)) for r in records)
    assert buffer.nbytes < plain / 2
    folders, schemas, shapes = buffer._tables
    assert len(folders) == 2 and len(schemas) == 0 and len(shapes) == 1
    monkeypatch.setattr(record_buffer, "MAX_FOLDERS", 3)
    monkeypatch.setattr(record_buffer, "MAX_SCHEMAS", 2)
    varied = [{f"key{i}": f"/folder{i}/file.png", "nested": {f"inner{i}": 1}} for i in range(10)]
    varied += [{f"flat{i}": f"/other{i}/file.png"} for i in range(10)]
    bounded = RecordBuffer(varied)
    assert [len(table) for table in bounded._tables] == [3, 2, 2]
    assert_same(list(bounded), varied)
    assert_same([bounded[i] for i in range(len(varied))], varied)


class Text(str):
    """A str subclass: not a flat value, pickled as it is."""


def mixed_records():
    """Runs of flat records long enough for the column-wise encoding, between records that are not flat, and runs
    where one column is not uniform (paths and other strings, several folders, a None, a subclass, a long string)."""
    run = record_buffer._MIN_RUN + 3
    semantic = [{"file_name": f"/coco/train2017/{i:012d}.jpg", "reduce_zero_label": i % 2 == 0} for i in range(run)]
    several_folders = [{"file_name": f"/root/part{i % 3}/{i}.jpg", "n": i, "x": i / 7} for i in range(run)]
    some_paths = [{"file_name": f"dir/{i}.jpg" if i % 2 else f"{i}.jpg", "n": i} for i in range(run)]
    no_paths = [{"stem": f"{i:06d}", "seed": 42 + i, "empty": ""} for i in range(run)]
    with_none = [{"file_name": f"/a/{i}.jpg", "extra": None if i % 3 else "/b/c.png"} for i in range(run)]
    subclass = [{"file_name": Text(f"/a/{i}.jpg") if i == 5 else f"/a/{i}.jpg"} for i in range(run)]
    long_text = [{"file_name": f"/a/{i}.jpg", "note": ("x" * 100_000 if i == 2 else "short")} for i in range(run)]
    nested = [{"file_name": f"/p/{i}.jpg", "segments_info": [{"id": i, "isthing": True}]} for i in range(run)]
    empty = [{} for _ in range(run)]
    return (
        synthetic_records(run)
        + HAND_MADE
        + semantic
        + several_folders
        + nested[:2]
        + some_paths
        + no_paths
        + [("a", "tuple")]
        + with_none
        + subclass
        + long_text
        + nested
        + empty
        + synthetic_records(3)
    )


def test_runs_of_flat_records_keep_order_and_types_between_other_records():
    records = mixed_records()
    buffer = RecordBuffer(records)
    assert_same([buffer[i] for i in range(len(records))], records)
    assert_same(list(buffer), records)


def test_runs_of_flat_records_are_encoded_column_wise_in_the_same_bytes(monkeypatch):
    """Each run of flat records is pickled without a Python call per record (the one-by-one encoder sees only the
    other records), into the bytes that the one-by-one encoder gives."""
    run = record_buffer._MIN_RUN
    flat = synthetic_records(3 * run) + [{"file_name": f"/coco/train2017/{i}.jpg", "n": i} for i in range(run)]
    records = HAND_MADE + flat[: 2 * run] + HAND_MADE + flat[2 * run :]
    one_by_one = []
    write = record_buffer._Encoder.write
    monkeypatch.setattr(
        record_buffer._Encoder, "write", lambda self, record: one_by_one.append(record) or write(self, record)
    )
    buffer = RecordBuffer(records)
    assert one_by_one == HAND_MADE + HAND_MADE
    monkeypatch.setattr(record_buffer, "_MIN_RUN", len(records) + 1)
    reference = RecordBuffer(records)
    assert len(one_by_one) == 2 * len(HAND_MADE) + len(records)
    assert bytes(buffer._bytes) == bytes(reference._bytes)
    assert np.array_equal(buffer._ends, reference._ends) and buffer._tables == reference._tables
    assert_same(list(buffer), records)


def test_column_wise_runs_respect_the_table_bounds(monkeypatch):
    monkeypatch.setattr(record_buffer, "MAX_FOLDERS", 3)
    monkeypatch.setattr(record_buffer, "MAX_SCHEMAS", 2)
    run = record_buffer._MIN_RUN + 1
    overflow_mid_run = [{"file_name": f"/folder{i}/file.png", "n": i} for i in range(run)]
    table_full = [{"file_name": f"/other{i % 2}/file.png", "n": i} for i in range(run)]
    third_shape = [{"stem": f"{i}", "n": i} for i in range(run)]
    records = overflow_mid_run + table_full + third_shape + overflow_mid_run
    buffer = RecordBuffer(records)
    assert [len(table) for table in buffer._tables] == [3, 1, 2]  # the third key tuple: a schema
    assert_same(list(buffer), records)
    assert_same([buffer[i] for i in range(len(records))], records)
    assert_same(list(RecordBuffer(records * 2000)), records * 2000)  # across chunks
