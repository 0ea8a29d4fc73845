import json
import os
import runpy

import cv2
import numpy as np
import pytest

from freemask.data.catalog import DatasetCatalog, MetadataCatalog
from freemask.data.datasets import load_sem_seg, register_sem_seg, register_toy
from freemask.data.datasets.toy import TOY_CLASSES
from freemask.data.errors import DatasetError
from freemask.data.mappers.semantic import SemSegDatasetMapper
from freemask.toy.generator import ToyParams, generate_toy_dataset, parse_size

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PARAMS = ToyParams(num_train=6, num_val=3, num_seeds=3, height=64, width=80, seed=1)
REAL = "toy/ADEChallengeData2016"
SYN = "toy/ADE20K_Synthetic"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("datasets"))
    assert generate_toy_dataset(root, PARAMS)
    return root


def stems(folder, ext):
    return sorted(f[: -len(ext)] for f in os.listdir(folder) if f.endswith(ext))


def read(path):
    return cv2.imread(path, cv2.IMREAD_UNCHANGED)


def test_layout_and_pairing(root):
    for split, prefix, count in [("training", "toy_train", 6), ("validation", "toy_val", 3)]:
        images = stems(os.path.join(root, REAL, "images", split), ".jpg")
        assert images == [f"{prefix}_{i:05d}" for i in range(count)]
        assert stems(os.path.join(root, REAL, "annotations", split), ".png") == images
    expected = [f"toy_train_{i:05d}_seed_{s}" for i in range(6) for s in (42, 43, 44)]
    for kind, ext in [("images", ".jpg"), ("annotations", ".png"), ("defects", ".png")]:
        assert stems(os.path.join(root, SYN, kind), ext) == expected
    with open(os.path.join(root, "toy", "meta.json")) as f:
        assert json.load(f)["num_seeds"] == 3
    assert not [f for _, _, files in os.walk(root) for f in files if ".tmp" in f]


def test_masks_follow_raw_ade_convention(root):
    labels = set()
    for stem in stems(os.path.join(root, REAL, "images", "training"), ".jpg"):
        mask = read(os.path.join(root, REAL, "annotations", "training", stem + ".png"))
        image = read(os.path.join(root, REAL, "images", "training", stem + ".jpg"))
        assert mask.dtype == np.uint8 and mask.shape == (64, 80) and image.shape == (64, 80, 3)
        labels |= set(np.unique(mask).tolist())
        with (
            open(os.path.join(root, SYN, "annotations", stem + "_seed_42.png"), "rb") as syn,
            open(os.path.join(root, REAL, "annotations", "training", stem + ".png"), "rb") as real,
        ):
            assert syn.read() == real.read()  # synthetic pairs share the real mask byte for byte
    assert 0 in labels and labels <= set(range(7)) and len(labels) >= 5  # unlabeled borders and most classes


def test_synthetic_images_differ_and_defects_are_recorded(root):
    with_defects = 0
    for stem in stems(os.path.join(root, SYN, "images"), ".jpg"):
        real_stem = stem.split("_seed_")[0]
        real = read(os.path.join(root, REAL, "images", "training", real_stem + ".jpg")).astype(int)
        syn = read(os.path.join(root, SYN, "images", stem + ".jpg")).astype(int)
        assert np.abs(real - syn).mean() > 3  # new textures, not a copy
        defects = read(os.path.join(root, SYN, "defects", stem + ".png"))
        mask = read(os.path.join(root, SYN, "annotations", stem + ".png"))
        assert set(np.unique(defects).tolist()) <= {0, 1} and not defects[mask == 0].any()
        with_defects += bool(defects.any())
    assert 0 < with_defects < 18


def test_generation_is_deterministic_and_idempotent(root, tmp_path):
    other = str(tmp_path)
    assert generate_toy_dataset(other, PARAMS)
    name = f"{SYN}/images/toy_train_00003_seed_43.jpg"
    with open(os.path.join(root, name), "rb") as a, open(os.path.join(other, name), "rb") as b:
        assert a.read() == b.read()
    before = os.stat(os.path.join(other, name)).st_mtime_ns
    assert not generate_toy_dataset(other, PARAMS)  # complete, same parameters: nothing written
    assert os.stat(os.path.join(other, name)).st_mtime_ns == before
    assert generate_toy_dataset(other, PARAMS, force=True)

    smaller = ToyParams(num_train=2, num_val=1, num_seeds=1, height=64, width=80, seed=2)
    assert generate_toy_dataset(other, smaller)  # other parameters: regenerated, no stale files left
    assert len(os.listdir(os.path.join(other, SYN, "images"))) == 2
    with (
        open(os.path.join(root, REAL, "images/training/toy_train_00000.jpg"), "rb") as a,
        open(os.path.join(other, REAL, "images/training/toy_train_00000.jpg"), "rb") as b,
    ):
        assert a.read() != b.read()  # another --seed, another dataset


def test_cli_defaults_and_idempotence(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    main = runpy.run_path(os.path.join(REPO, "tools", "make_toy_dataset.py"))["main"]
    argv = ["--num-train", "2", "--num-val", "1", "--seeds", "1", "--size", "48x64"]
    main(argv)
    assert "Wrote the toy dataset" in capsys.readouterr().out
    assert read(os.path.join(tmp_path, REAL, "annotations/training/toy_train_00001.png")).shape == (48, 64)
    main(argv)
    assert "nothing to do" in capsys.readouterr().out
    assert parse_size("512x683") == (512, 683)
    with pytest.raises(SystemExit):
        main(["--size", "512"])


def test_registration_is_lazy_and_reads_the_environment_when_loading(root, tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "nowhere"))
    register_toy()  # again: no error, no disk access
    with pytest.raises(DatasetError, match="make_toy_dataset.py") as error:
        DatasetCatalog.get("toy_sem_seg_train")
    assert "nowhere" in str(error.value) and "\n" not in str(error.value)

    monkeypatch.setenv("DETECTRON2_DATASETS", root)
    train, val = DatasetCatalog.get("toy_sem_seg_train"), DatasetCatalog.get("toy_sem_seg_val")
    syn = DatasetCatalog.get("toy_syn_sem_seg_train")
    assert (len(train), len(val), len(syn)) == (6, 3, 18)
    assert all(r["reduce_zero_label"] and os.path.isfile(r["file_name"]) for r in train + val + syn)
    assert os.path.basename(syn[4]["sem_seg_file_name"]) == "toy_train_00001_seed_43.png"
    meta = MetadataCatalog.get("toy_sem_seg_train")
    assert meta.stuff_classes == list(TOY_CLASSES) and len(meta.stuff_colors) == 6
    assert meta.ignore_label == 255 and meta.evaluator_type == "sem_seg"

    out = SemSegDatasetMapper(False, min_size_test=64)(val[0])
    assert set(out["sem_seg"].unique().tolist()) <= set(range(6)) | {255}  # reduced: 0..5 and ignore


# ------------------------------------------------------------------------------------------- generic folder loader
def test_load_sem_seg_pairs_by_stem_and_reports_problems(tmp_path):
    images, masks = tmp_path / "img", tmp_path / "ann"
    with pytest.raises(DatasetError, match="folder not found") as error:
        load_sem_seg(str(images), str(masks))
    assert str(images) in str(error.value)
    images.mkdir()
    masks.mkdir()
    with pytest.raises(DatasetError, match="empty"):
        load_sem_seg(str(images), str(masks))
    for stem in ("b", "a", "c"):
        (images / f"{stem}.jpg").write_bytes(b"")
    (masks / "a.png").write_bytes(b"")
    (masks / "b.png").write_bytes(b"")
    (masks / "extra.png").write_bytes(b"")  # a mask without image is allowed
    with pytest.raises(DatasetError, match="1 of 3 images") as error:
        load_sem_seg(str(images), str(masks))
    assert "c.jpg" in str(error.value)
    (masks / "c.png").write_bytes(b"")
    records = load_sem_seg(str(images), str(masks), reduce_zero_label=True)
    assert [os.path.basename(r["file_name"]) for r in records] == ["a.jpg", "b.jpg", "c.jpg"]
    assert [os.path.basename(r["sem_seg_file_name"]) for r in records] == ["a.png", "b.png", "c.png"]
    assert all(r["reduce_zero_label"] for r in records)


def test_register_sem_seg_is_lazy_with_default_palette(tmp_path):
    name = "test_register_sem_seg_lazy"
    register_sem_seg(name, str(tmp_path / "missing_img"), str(tmp_path / "missing_ann"), stuff_classes=["a", "b", "c"])
    try:
        meta = MetadataCatalog.get(name)
        assert meta.evaluator_type == "sem_seg" and meta.ignore_label == 255
        assert meta.image_root == str(tmp_path / "missing_img") and meta.sem_seg_root == str(tmp_path / "missing_ann")
        colors = meta.stuff_colors
        assert len(colors) == 3 and len({tuple(c) for c in colors}) == 3 and [0, 0, 0] not in colors
        with pytest.raises(DatasetError, match="missing_img"):
            DatasetCatalog.get(name)
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
