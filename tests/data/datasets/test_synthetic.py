"""Synthetic splits: `<real_stem>_seed_<int>` pairing, filtered masks, the resampled manifest, shared metadata."""

import os

import cv2
import numpy as np
import pytest

from freemask.data.catalog import DatasetCatalog, MetadataCatalog
from freemask.data.datasets import read_manifest, register_synthetic_splits, write_manifest
from freemask.data.datasets.synthetic import (
    MANIFEST_NAME,
    load_resampled,
    load_synthetic,
    parse_synthetic_stem,
)
from freemask.data.datasets.toy import TOY_CLASSES
from freemask.data.errors import DatasetError
from freemask.data.mappers.semantic import SemSegDatasetMapper

STEMS = ["b_seed_42", "a_seed_100", "a_seed_9", "a_seed_42"]  # sorted: a 9, a 42, a 100, b 42


def write_pair(root, stem, masks_dir="annotations", value=3):
    for folder in ("images", masks_dir):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    cv2.imwrite(os.path.join(root, "images", stem + ".jpg"), np.full((32, 32, 3), 128, np.uint8))
    mask = np.zeros((32, 32), np.uint8)
    mask[8:, :] = value
    cv2.imwrite(os.path.join(root, masks_dir, stem + ".png"), mask)


@pytest.fixture
def syn_root(tmp_path):
    root = str(tmp_path / "toy" / "ADE20K_Synthetic")
    for stem in STEMS:
        write_pair(root, stem)
    # Files that do not name a synthetic pair: ignored, even with a mask.
    write_pair(root, "preview")
    write_pair(root, "a_seed_x")
    with open(os.path.join(root, "images", "readme.txt"), "w") as f:
        f.write("not an image")
    return root


def basenames(records, key="file_name"):
    return [os.path.basename(r[key]) for r in records]


def test_parse_synthetic_stem():
    assert parse_synthetic_stem("ADE_train_00000001_seed_42") == ("ADE_train_00000001", 42)
    assert parse_synthetic_stem("x_seed_1_seed_7") == ("x_seed_1", 7)
    for stem in ("ADE_train_00000001", "a_seed_x", "_seed_42", "a_seed_", "a_seed_4.2"):
        assert parse_synthetic_stem(stem) is None


def test_all_pairs_sorted_by_real_stem_then_numeric_seed(syn_root):
    records = load_synthetic(syn_root, reduce_zero_label=True)
    assert basenames(records) == ["a_seed_9.jpg", "a_seed_42.jpg", "a_seed_100.jpg", "b_seed_42.jpg"]
    assert basenames(records, "sem_seg_file_name") == [
        "a_seed_9.png",
        "a_seed_42.png",
        "a_seed_100.png",
        "b_seed_42.png",
    ]
    assert [(r["real_stem"], r["seed"]) for r in records] == [("a", 9), ("a", 42), ("a", 100), ("b", 42)]
    assert all(
        r["reduce_zero_label"] and os.path.dirname(r["sem_seg_file_name"]).endswith("annotations") for r in records
    )


def test_all_pairs_errors(syn_root, tmp_path):
    os.remove(os.path.join(syn_root, "annotations", "a_seed_42.png"))
    with pytest.raises(DatasetError, match="1 of 4 synthetic images") as error:
        load_synthetic(syn_root)
    assert "a_seed_42.jpg" in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(DatasetError, match="get it from the release") as error:
        load_synthetic(str(tmp_path / "nowhere"), missing_hint="get it from the release")
    assert str(tmp_path / "nowhere") in str(error.value)
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    (empty / "images" / "real_image.jpg").write_bytes(b"")
    with pytest.raises(DatasetError, match="no synthetic images named"):
        load_synthetic(str(empty))


def test_filtered_split_reads_filtered_masks_and_requires_all_of_them(syn_root):
    with pytest.raises(DatasetError, match="filter_syn.py") as error:
        load_synthetic(syn_root, "annotations_filtered")
    assert "annotations_filtered" in str(error.value)
    for stem in STEMS[:3]:
        write_pair(syn_root, stem, "annotations_filtered", value=255)
    with pytest.raises(DatasetError, match=r"1 of 4 synthetic images .*filter_syn\.py"):
        load_synthetic(syn_root, "annotations_filtered")
    write_pair(syn_root, STEMS[3], "annotations_filtered", value=255)
    records = load_synthetic(syn_root, "annotations_filtered", reduce_zero_label=True)
    assert basenames(records) == basenames(load_synthetic(syn_root))
    assert all(os.path.dirname(r["sem_seg_file_name"]).endswith("annotations_filtered") for r in records)
    assert (cv2.imread(records[0]["sem_seg_file_name"], cv2.IMREAD_UNCHANGED)[8:] == 255).all()


def test_manifest_round_trip(syn_root, tmp_path, monkeypatch):
    manifest = os.path.join(syn_root, MANIFEST_NAME)
    pairs = [(r["file_name"], r["sem_seg_file_name"]) for r in load_synthetic(syn_root)][::-1]
    write_manifest(manifest, pairs, syn_root)
    assert read_manifest(manifest, syn_root) == [(os.path.normpath(i), os.path.normpath(m)) for i, m in pairs]
    with open(manifest, encoding="utf-8") as f:
        lines = f.read().splitlines()
    assert lines[0].startswith("#") and lines[1] == "images/b_seed_42.jpg\tannotations/b_seed_42.png"
    assert sorted(os.listdir(syn_root)) == ["annotations", "images", MANIFEST_NAME]  # no temporary file left

    # Relative input paths (from the current directory) are accepted too; a rewrite replaces the file.
    monkeypatch.chdir(syn_root)
    write_manifest(manifest, [("images/a_seed_9.jpg", "annotations/a_seed_9.png")], ".")
    assert read_manifest(manifest, syn_root) == [
        (os.path.join(syn_root, "images/a_seed_9.jpg"), os.path.join(syn_root, "annotations/a_seed_9.png"))
    ]
    records = load_resampled(syn_root, reduce_zero_label=True)
    assert [(r["real_stem"], r["seed"], r["reduce_zero_label"]) for r in records] == [("a", 9, True)]


def test_write_manifest_rejects_duplicates_and_outside_paths(syn_root, tmp_path):
    manifest = os.path.join(syn_root, MANIFEST_NAME)
    pair = (os.path.join(syn_root, "images/a_seed_9.jpg"), os.path.join(syn_root, "annotations/a_seed_9.png"))
    with pytest.raises(ValueError, match="twice"):
        write_manifest(manifest, [pair, pair], syn_root)
    with pytest.raises(ValueError, match="outside"):
        write_manifest(manifest, [(str(tmp_path / "x_seed_1.jpg"), pair[1])], syn_root)
    assert not os.path.exists(manifest)


def write_text(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def test_read_manifest_format_and_errors(syn_root):
    manifest = os.path.join(syn_root, MANIFEST_NAME)
    with pytest.raises(DatasetError, match="resample_syn.py") as error:
        read_manifest(manifest, syn_root)
    assert manifest in str(error.value)

    write_text(
        manifest, "# comment\n\nimages/a_seed_9.jpg\tannotations/a_seed_9.png\r\n  \nimages/b_seed_42.jpg\tx.png\n"
    )
    assert read_manifest(manifest, syn_root) == [
        (os.path.join(syn_root, "images/a_seed_9.jpg"), os.path.join(syn_root, "annotations/a_seed_9.png")),
        (os.path.join(syn_root, "images/b_seed_42.jpg"), os.path.join(syn_root, "x.png")),
    ]
    bad = {
        "images/a_seed_9.jpg annotations/a_seed_9.png\n": ":1: expected",
        "images/a_seed_9.jpg\tannotations/a_seed_9.png\tz\n": ":1: expected",
        "#\nimages/a_seed_9.jpg\t/abs/a_seed_9.png\n": ":2: paths must be relative",
        "a_seed_9.jpg\ta.png\nb_seed_42.jpg\tb.png\na_seed_9.jpg\ta.png\n": ":3: pair .* already listed on line 1",
        "# only comments\n\n": "lists no pairs",
    }
    for text, message in bad.items():
        write_text(manifest, text)
        with pytest.raises(DatasetError, match=message) as error:
            read_manifest(manifest, syn_root)
        assert "\n" not in str(error.value)


def test_resampled_loader_checks_listed_files(syn_root):
    manifest = os.path.join(syn_root, MANIFEST_NAME)
    write_text(
        manifest, "images/a_seed_42.jpg\tannotations/a_seed_42.png\nimages/a_seed_7.jpg\tannotations/a_seed_7.png\n"
    )
    with pytest.raises(DatasetError, match="2 files listed") as error:
        load_resampled(syn_root)
    assert "a_seed_7.jpg" in str(error.value) and "resample_syn.py" in str(error.value)
    write_text(manifest, "images/preview.jpg\tannotations/preview.png\n")
    with pytest.raises(DatasetError, match="<real_stem>_seed_<int>"):
        load_resampled(syn_root)


def test_toy_synthetic_splits_share_metadata_and_read_env_at_load(syn_root, tmp_path, monkeypatch):
    names = ["toy_syn_sem_seg_train", "toy_syn_filtered_sem_seg_train", "toy_syn_resampled_sem_seg_train"]
    for name in names:
        meta = MetadataCatalog.get(name)
        assert meta.stuff_classes == list(TOY_CLASSES) and meta.ignore_label == 255 and meta.evaluator_type == "sem_seg"
        assert meta.stuff_colors == MetadataCatalog.get("toy_sem_seg_train").stuff_colors

    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "elsewhere"))
    with pytest.raises(DatasetError, match="make_toy_dataset.py"):
        DatasetCatalog.get("toy_syn_sem_seg_train")

    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    assert basenames(DatasetCatalog.get("toy_syn_sem_seg_train"))[0] == "a_seed_9.jpg"
    with pytest.raises(DatasetError, match="filter_syn.py"):
        DatasetCatalog.get("toy_syn_filtered_sem_seg_train")
    with pytest.raises(DatasetError, match="resample_syn.py"):
        DatasetCatalog.get("toy_syn_resampled_sem_seg_train")
    for stem in STEMS:
        write_pair(syn_root, stem, "annotations_filtered", value=255)
    filtered = DatasetCatalog.get("toy_syn_filtered_sem_seg_train")
    assert len(filtered) == 4 and all(r["reduce_zero_label"] for r in filtered)
    write_manifest(
        os.path.join(syn_root, MANIFEST_NAME),
        [(r["file_name"], r["sem_seg_file_name"]) for r in filtered[:2]],
        syn_root,
    )
    resampled = DatasetCatalog.get("toy_syn_resampled_sem_seg_train")
    assert [r["sem_seg_file_name"] for r in resampled] == [r["sem_seg_file_name"] for r in filtered[:2]]

    # The raw toy convention applies: 3 -> class 2, 0 -> ignore; a filtered mask is all ignore where it filtered.
    out = SemSegDatasetMapper(False, min_size_test=32)(DatasetCatalog.get("toy_syn_sem_seg_train")[0])
    assert set(out["sem_seg"].unique().tolist()) == {2, 255}
    out = SemSegDatasetMapper(False, min_size_test=32)(resampled[0])
    assert set(out["sem_seg"].unique().tolist()) == {255}


def test_register_synthetic_splits_is_lazy_and_validates(monkeypatch):
    def root_fn():
        raise AssertionError("the root must not be read at registration")

    names = {"all": "test_syn_lazy_all", "resampled": "test_syn_lazy_resampled"}
    try:
        register_synthetic_splits(names, root_fn, "toy_sem_seg_train", reduce_zero_label=True, missing_hint="")
        register_synthetic_splits(names, root_fn, "toy_sem_seg_train", reduce_zero_label=True, missing_hint="")
        assert MetadataCatalog.get("test_syn_lazy_all").stuff_classes == list(TOY_CLASSES)
        with pytest.raises(AssertionError, match="must not be read"):
            DatasetCatalog.get("test_syn_lazy_resampled")  # called now, when loading
    finally:
        for name in names.values():
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
    with pytest.raises(ValueError, match="unknown synthetic split kinds"):
        register_synthetic_splits({"best": "x"}, root_fn, "toy_sem_seg_train", True, "")
    with pytest.raises(ValueError, match="before its synthetic splits"):
        register_synthetic_splits({"all": "x"}, root_fn, "test_syn_no_such_real_dataset", True, "")
    MetadataCatalog.remove("test_syn_no_such_real_dataset")
    assert "x" not in DatasetCatalog
