"""The generic seen/unseen preparation on a small hand-made ADE-layout tree (the toy's classes, unseen road and
person): label values and void, re-indexing, all-void files still written, panoptic and instance splits, label
counts, resume after an interruption, inputs never modified, the same files with worker processes, and one clear
line for a missing input or a foreign label."""

import hashlib
import json
import pathlib
import shutil

import cv2
import numpy as np
import pytest

from freemask.data.datasets.open_vocab import open_vocab_split
from freemask.data.errors import DatasetError
from freemask.data.panoptic_png import id2rgb, read_panoptic_png
from freemask.data.prepare.open_vocab_datasets import prepare_ade_layout_open_vocab
from freemask.utils.atomic import is_temporary

SKY, GRASS, ROAD, BUILDING, CAR, PERSON = range(1, 7)  # raw toy labels = dataset ids; contiguous = label - 1
SPLIT = open_vocab_split("toy_6")
FOLDERS = {"train": "training", "val": "validation"}


def scene(index: int):
    """(raw semantic (8, 10), panoptic ids, segments_info) of one hand-made image; image 1 holds only unseen classes."""
    sem = np.full((8, 10), SKY, np.uint8)
    ids = np.full((8, 10), 1, np.int32)
    segments = [{"id": 1, "category_id": SKY}, {"id": 2, "category_id": ROAD}]
    sem[5:], ids[5:] = ROAD, 2
    if index == 1:
        sem[:5], ids[:5] = PERSON, 3
        segments = [{"id": 3, "category_id": PERSON}, segments[1]]
    else:
        sem[1:4, 1:4], ids[1:4, 1:4] = CAR, 7
        sem[2:5, 6:8], ids[2:5, 6:8] = PERSON, 9
        segments += [{"id": 7, "category_id": CAR}, {"id": 9, "category_id": PERSON}]
    sem[0, 0], ids[0, 0] = 0, 0  # unlabeled pixel = void
    for seg in segments:
        seg.update(area=int((ids == seg["id"]).sum()), iscrowd=0, bbox=[0, 0, 1, 1])
    return sem, ids, segments


def write(path: pathlib.Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


@pytest.fixture
def tree(tmp_path: pathlib.Path) -> pathlib.Path:
    base = tmp_path / "ADE"
    for short, folder in FOLDERS.items():
        images, annotations, instances = [], [], []
        for index in range(2):
            stem = f"{short}_{index}"
            sem, ids, segments = scene(index)
            write(base / "annotations" / folder / f"{stem}.png", sem)
            write(base / "images" / folder / f"{stem}.jpg", np.zeros((8, 10, 3), np.uint8))
            write(base / f"ade20k_panoptic_{short}" / f"{stem}.png", id2rgb(ids)[..., ::-1])
            images.append({"id": index, "file_name": f"{stem}.jpg", "height": 8, "width": 10})
            annotations.append({"image_id": index, "file_name": f"{stem}.png", "segments_info": segments})
            instances += [{"id": len(instances) + 1, "image_id": index, "category_id": s["category_id"]}
                          for s in segments if s["category_id"] in (CAR, PERSON)]  # fmt: skip
        categories = [{"id": i, "name": n} for i, n in zip(SPLIT.categories.ids, SPLIT.categories.names)]
        pan = {"images": images, "annotations": annotations, "categories": categories}
        (base / f"ade20k_panoptic_{short}.json").write_text(json.dumps(pan))
        ins = {"images": images, "annotations": instances, "categories": [c for c in categories if c["id"] >= CAR]}
        (base / f"ade20k_instance_{short}.json").write_text(json.dumps(ins))
    return base


def hashes(folder: pathlib.Path, only=None) -> dict:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and (only is None or str(p.relative_to(folder)) in only)
    }


def read(path: pathlib.Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def run(base: pathlib.Path, **kwargs):
    return prepare_ade_layout_open_vocab(str(base), SPLIT, progress=False, hint="make the tree", **kwargs)


def test_semantic_maps_per_kind(tree):
    result = run(tree)
    assert result.errors == []
    sem_dir = tree / "annotations_detectron2"
    for short, folder in FOLDERS.items():
        for index in range(2):
            raw = scene(index)[0].astype(np.int64)
            full = np.where(raw == 0, 255, raw - 1)
            base_lut = {0: 0, 1: 1, 3: 2, 4: 3}  # sky, grass, building, car
            novel_lut = {2: 0, 5: 1}  # road, person
            name = f"{short}_{index}.png"
            assert np.array_equal(read(sem_dir / folder / name), full)
            for suffix, lut in (("_base", base_lut), ("_novel", novel_lut)):
                expected = np.vectorize(lambda v, lut=lut: lut.get(int(v), 255))(full)
                out = read(sem_dir / f"{folder}{suffix}" / name)
                assert out.dtype == np.uint8 and np.array_equal(out, expected), (suffix, name)
    # image 1 holds only road and person: its base map is all void, and written all the same
    assert (read(sem_dir / "training_base" / "train_1.png") == 255).all()


def test_label_counts_per_kind(tree):
    run(tree)
    counts = {
        suffix: json.loads((tree / "annotations_detectron2" / f"training{suffix}_label_count.json").read_text())
        for suffix in ("", "_base", "_novel")
    }
    assert counts[""] == {"train_0.png": [0, 2, 4, 5], "train_1.png": [2, 5]}
    assert counts["_base"] == {"train_0.png": [0, 3], "train_1.png": []}
    assert counts["_novel"] == {"train_0.png": [0, 1], "train_1.png": [0, 1]}


def test_panoptic_split_voids_the_other_classes(tree):
    run(tree)
    for kind, kept in (("base", {SKY, CAR}), ("novel", {ROAD, PERSON})):
        data = json.loads((tree / f"ade20k_panoptic_val_{kind}.json").read_text())
        assert [c["id"] for c in data["categories"]] == list(SPLIT.categories_of(kind).ids)
        assert len(data["images"]) == 2
        for ann, index in zip(data["annotations"], range(2)):
            _, ids_in, segments_in = scene(index)
            segments = ann["segments_info"]
            assert [s for s in segments_in if s["category_id"] in kept] == segments  # ids, areas, boxes kept
            ids = read_panoptic_png(str(tree / f"ade20k_panoptic_val_{kind}" / ann["file_name"]), segments)
            keep_ids = [s["id"] for s in segments]
            assert np.array_equal(ids, np.where(np.isin(ids_in, keep_ids), ids_in, 0))


def test_instance_split(tree):
    run(tree)
    base = json.loads((tree / "ade20k_instance_train_base.json").read_text())
    novel = json.loads((tree / "ade20k_instance_train_novel.json").read_text())
    assert [c["id"] for c in base["categories"]] == [CAR] and [c["id"] for c in novel["categories"]] == [PERSON]
    assert {a["category_id"] for a in base["annotations"]} == {CAR} and len(base["images"]) == 2
    assert [a["category_id"] for a in novel["annotations"]] == [PERSON, PERSON]


def test_resume_and_read_only_inputs(tree):
    inputs = hashes(tree)
    run(tree)
    first = hashes(tree)
    assert {k: v for k, v in first.items() if k in inputs} == inputs  # inputs untouched
    again = run(tree)
    assert again.converted == 0 and again.errors == [] and hashes(tree) == first
    # an interruption: a missing map, a truncated panoptic PNG, no JSON yet for that kind, stale label counts
    (tree / "annotations_detectron2" / "validation_novel" / "val_0.png").unlink()
    png = tree / "ade20k_panoptic_train_base" / "train_0.png"
    png.write_bytes(png.read_bytes()[:-20])
    (tree / "ade20k_panoptic_train_base.json").unlink()
    (tree / "annotations_detectron2" / "validation_label_count.json").unlink()
    resumed = run(tree)
    assert resumed.errors == [] and 0 < resumed.converted < sum(1 for _ in first)
    assert hashes(tree) == first
    assert not [p for p in tree.rglob("*") if is_temporary(p.name)]


def test_worker_processes_write_the_same_files(tree, tmp_path):
    other = tmp_path / "copy"
    shutil.copytree(tree, other)
    run(tree)
    assert run(other, workers=2).errors == []
    assert hashes(other) == hashes(tree)


def test_missing_input_and_foreign_label(tree):
    (tree / "ade20k_instance_val.json").unlink()
    with pytest.raises(DatasetError, match=r"ade20k_instance_val.json not found; make the tree"):
        run(tree)
    (tree / "ade20k_instance_val.json").write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    bad = tree / "annotations" / "training" / "train_0.png"
    mask = read(bad)
    mask[0, 1] = 9  # the toy has labels 0..6
    write(bad, mask)
    result = run(tree)
    assert len(result.errors) == 3 and all("train_0.png: label values [9]" in e for e in result.errors)
