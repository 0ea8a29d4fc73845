"""The ``*_base`` synthetic splits: registered for every root and kind with the vocabulary of the real base split,
reading the prepared twins (the resampled kind through the full split's manifest), and one line naming the
preparation when a twin is missing."""

import os

import cv2
import numpy as np
import pytest

from freemask.data.catalog import DatasetCatalog, MetadataCatalog
from freemask.data.datasets.synthetic import write_manifest
from freemask.data.datasets.synthetic_open_vocab import SYNTHETIC_VOCAB_ROOTS
from freemask.data.errors import DatasetError
from freemask.data.prepare.synthetic_open_vocab import prepare_synthetic_open_vocab

TOY_RAW = np.array([[0, 1, 2, 3], [4, 5, 6, 1]], np.uint8)  # raw toy labels (k + 1), unseen road 3, person 6
BASE_NAMES = {
    "ade20k_all_train_base": (
        "ade20k_syn_sem_seg_train_base",
        "ade20k_syn_filtered_sem_seg_train_base",
        "ade20k_syn_resampled_sem_seg_train_base",
    ),
    "coco_2017_train_full_task_base": (
        "coco_2017_syn_stuff_sem_seg_train_base",
        "coco_2017_syn_filtered_stuff_sem_seg_train_base",
        "coco_2017_syn_resampled_stuff_sem_seg_train_base",
    ),
    "toy_ov_train_base": (
        "toy_syn_sem_seg_train_base",
        "toy_syn_filtered_sem_seg_train_base",
        "toy_syn_resampled_sem_seg_train_base",
    ),
}
VOCABULARY_KEYS = ("stuff_classes", "thing_classes", "thing_dataset_id_to_contiguous_id", "ignore_label")


@pytest.mark.parametrize("real", sorted(BASE_NAMES))
def test_metadata_is_the_base_split_vocabulary(real):
    sizes = {"ade20k_all_train_base": 135, "coco_2017_train_full_task_base": 156, "toy_ov_train_base": 4}
    expected = MetadataCatalog.get(real)
    assert len(expected.stuff_classes) == sizes[real]
    for name in BASE_NAMES[real]:
        assert name in DatasetCatalog
        meta = MetadataCatalog.get(name)
        for key in VOCABULARY_KEYS:
            assert meta.get(key) == expected.get(key), (name, key)
        assert meta.get("trainable_flag") is None and meta.real_dataset == real
        full = MetadataCatalog.get(name[: -len("_base")])  # the release split: every class, the seen ones kept
        assert len(meta.stuff_classes) < len(full.stuff_classes)
        if real != "ade20k_all_train_base":  # ADE's open-vocabulary names are FreeSeg's, the release split's the short
            assert set(meta.stuff_classes) < set(full.stuff_classes)


def test_the_synthetic_coco_classes_are_the_full_task_vocabulary():
    assert (
        MetadataCatalog.get("coco_2017_syn_stuff_sem_seg_train").stuff_classes
        == MetadataCatalog.get("coco_2017_train_full_task").stuff_classes
    )


def test_every_registered_root_is_listed():
    assert {e.real_dataset for e in SYNTHETIC_VOCAB_ROOTS.values()} == set(BASE_NAMES)


@pytest.fixture
def prepared(tmp_path, monkeypatch):
    """A toy synthetic root of three pairs (images/, annotations/, annotations_filtered/), not yet prepared."""
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    root = tmp_path / "toy" / "ADE20K_Synthetic"
    for sub in ("images", "annotations", "annotations_filtered"):
        (root / sub).mkdir(parents=True)
    for stem in ("a_seed_0", "a_seed_1", "b_seed_0"):
        cv2.imwrite(str(root / "images" / f"{stem}.jpg"), np.zeros((2, 4, 3), np.uint8))
        for sub in ("annotations", "annotations_filtered"):
            cv2.imwrite(str(root / sub / f"{stem}.png"), TOY_RAW)
    return str(root)


def test_a_missing_twin_names_the_preparation(prepared):
    for name in ("toy_syn_sem_seg_train_base", "toy_syn_filtered_sem_seg_train_base"):
        with pytest.raises(DatasetError, match=r"annotations(_filtered)?_base.*prepare_synthetic_open_vocab\.py"):
            DatasetCatalog.get(name)
    os.rename(os.path.join(prepared, "annotations_filtered"), os.path.join(prepared, "filtered_away"))
    both = r"`freemask prepare synthetic-open-vocab` \(in a checkout: `python datasets/prepare_synthetic"
    with pytest.raises(DatasetError, match=r"filter_syn\.py`\), then run " + both):
        DatasetCatalog.get("toy_syn_filtered_sem_seg_train_base")


def test_records_read_the_twins(prepared):
    prepare_synthetic_open_vocab(os.path.dirname(os.path.dirname(prepared)), progress=False)
    for name, folder in (("toy_syn_sem_seg_train_base", "annotations_base"),
                         ("toy_syn_filtered_sem_seg_train_base", "annotations_filtered_base")):  # fmt: skip
        records = DatasetCatalog.get(name)
        assert [(r["real_stem"], r["seed"]) for r in records] == [("a", 0), ("a", 1), ("b", 0)]
        assert all(r["sem_seg_file_name"] == os.path.join(prepared, folder, f"{r['real_stem']}_seed_{r['seed']}.png")
                   and not r["reduce_zero_label"] for r in records)  # fmt: skip

    os.remove(os.path.join(prepared, "annotations_base", "a_seed_1.png"))  # an interrupted preparation
    both = r"`freemask prepare synthetic-open-vocab` \(in a checkout: `python datasets/prepare_syn"
    with pytest.raises(DatasetError, match="a_seed_1.*finish the preparation with " + both):
        DatasetCatalog.get("toy_syn_sem_seg_train_base")


def test_the_resampled_twin_follows_the_full_split_manifest(prepared):
    prepare_synthetic_open_vocab(os.path.dirname(os.path.dirname(prepared)), progress=False)
    pair = lambda stem: (os.path.join(prepared, "images", f"{stem}.jpg"),  # noqa: E731
                         os.path.join(prepared, "annotations_filtered", f"{stem}.png"))  # fmt: skip
    write_manifest(os.path.join(prepared, "resampled_manifest.txt"), [pair("b_seed_0"), pair("a_seed_1")], prepared)
    full = DatasetCatalog.get("toy_syn_resampled_sem_seg_train")
    base = DatasetCatalog.get("toy_syn_resampled_sem_seg_train_base")
    assert [r["file_name"] for r in base] == [r["file_name"] for r in full]
    assert [r["sem_seg_file_name"] for r in base] == [
        os.path.join(prepared, "annotations_filtered_base", n) for n in ("b_seed_0.png", "a_seed_1.png")
    ]
    assert not any(r["reduce_zero_label"] for r in base) and all(r["reduce_zero_label"] for r in full)

    os.remove(os.path.join(prepared, "annotations_filtered_base", "a_seed_1.png"))
    with pytest.raises(DatasetError, match="annotations_filtered_base/a_seed_1.png not found.*prepare_synthetic"):
        DatasetCatalog.get("toy_syn_resampled_sem_seg_train_base")
