"""The toy dataset's panoptic and instance files: segments per instance/class, void on borders, PNG ids in the JSON,
pycocotools reads the instances, and the semantic toy files are unchanged by the panoptic output."""

import hashlib
import json
import os

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_util
from pycocotools.coco import COCO

from freemask.data.catalog import DatasetCatalog, MetadataCatalog
from freemask.data.panoptic_png import read_panoptic_png
from freemask.toy.generator import LABEL, ToyParams, generate_toy_dataset
from freemask.toy.generator_panoptic import generate_toy_panoptic

PARAMS = ToyParams(num_train=6, num_val=3, num_seeds=1, height=64, width=80, seed=1)
BASE = "toy/ADEChallengeData2016"
THINGS = {LABEL["car"], LABEL["person"]}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("datasets"))
    assert generate_toy_dataset(root, PARAMS)
    return root


def load(root, name):
    with open(os.path.join(root, BASE, name)) as f:
        return json.load(f)


def tree_hashes(root, skip=()):
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            if not any(s in path for s in skip):
                with open(path, "rb") as f:
                    out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest.mark.parametrize("short,folder,count", [("train", "training", 6), ("val", "validation", 3)])
def test_segments_match_the_semantic_mask(root, short, folder, count):
    data = load(root, f"ade20k_panoptic_{short}.json")
    assert [img["file_name"] for img in data["images"]] == [f"toy_{short}_{i:05d}.jpg" for i in range(count)]
    assert {c["id"]: c["isthing"] for c in data["categories"]} == {1: 0, 2: 0, 3: 0, 4: 0, 5: 1, 6: 1}
    things_seen = 0
    for ann in data["annotations"]:
        segments = ann["segments_info"]
        ids = read_panoptic_png(os.path.join(root, BASE, f"ade20k_panoptic_{short}", ann["file_name"]), segments)
        sem = cv2.imread(os.path.join(root, BASE, "annotations", folder, ann["file_name"]), cv2.IMREAD_UNCHANGED)
        seg_ids = [s["id"] for s in segments]
        assert len(seg_ids) == len(set(seg_ids)) and 0 not in seg_ids  # unique per image, 0 is void
        assert set(np.unique(ids).tolist()) - {0} == set(seg_ids)  # every PNG id in the JSON and back
        assert np.array_equal(ids == 0, sem == 0)  # void exactly on the unlabeled borders
        stuff = [s["category_id"] for s in segments if s["category_id"] not in THINGS]
        assert len(stuff) == len(set(stuff))  # stuff: one segment per class
        for seg in segments:
            where = ids == seg["id"]
            assert (sem[where] == seg["category_id"]).all()
            assert seg["area"] == int(where.sum()) and seg["iscrowd"] == 0
            x, y, w, h = seg["bbox"]
            assert where[y : y + h, x : x + w].sum() == seg["area"]
        for label in np.unique(sem):
            if label and label not in THINGS:
                assert label in stuff  # every stuff class present has its segment
        things_seen += sum(s["category_id"] in THINGS for s in segments)
    assert things_seen > 0


def test_things_are_one_segment_per_painted_object(root):
    """Two overlapping cars stay two segments though the semantic mask merges them."""
    from freemask.toy.generator_panoptic import panoptic_segments

    h, w = 40, 60
    sky = np.zeros((h, w), bool)
    sky[:10] = True
    car_a, car_b = np.zeros((h, w), bool), np.zeros((h, w), bool)
    car_a[20:30, 5:30], car_b[22:32, 25:50] = True, True
    road_a, road_b = np.zeros((h, w), bool), np.zeros((h, w), bool)
    road_a[35:, :20], road_b[35:, 40:] = True, True
    border = np.zeros((h, w), bool)
    border[:, 0] = True
    layers = [(1, sky), (2, ~sky), (3, road_a), (3, road_b), (5, car_a), (5, car_b), (6, np.zeros((h, w), bool))]
    ids, segments = panoptic_segments(layers, border)
    cats = [s["category_id"] for s in segments]
    assert cats == [1, 2, 3, 5, 5]  # one road segment for both road layers, two cars, the hidden person dropped
    assert (ids[:, 0] == 0).all()
    assert (ids[car_b & ~border] == 5).all() and (ids[car_a & ~car_b & ~border] == 4).all()


def test_instance_json_loads_in_pycocotools(root):
    for short in ("train", "val"):
        path = os.path.join(root, BASE, f"ade20k_instance_{short}.json")
        coco = COCO(path)
        panoptic = load(root, f"ade20k_panoptic_{short}.json")
        assert sorted(coco.getCatIds()) == [5, 6]
        n_things = sum(s["category_id"] in THINGS for a in panoptic["annotations"] for s in a["segments_info"])
        assert len(coco.getAnnIds()) == n_things
        ann = coco.loadAnns(coco.getAnnIds())[0]
        assert coco.annToMask(ann).sum() == ann["area"] == int(mask_util.area(ann["segmentation"]))


def test_registered_splits_read_the_toy_files(root, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", root)
    records = DatasetCatalog.get("toy_panoptic_train")
    assert len(records) == 6
    rec = records[0]
    assert set(rec) == {
        "file_name",
        "image_id",
        "height",
        "width",
        "annotation_file",
        "pan_seg_file_name",
        "segments_info",
        "sem_seg_file_name",
        "reduce_zero_label",
    }
    assert rec["annotation_file"] == os.path.join(root, BASE, "ade20k_panoptic_train.json")
    assert rec["reduce_zero_label"] is True and (rec["height"], rec["width"]) == (64, 80)
    for seg in rec["segments_info"]:
        assert 0 <= seg["category_id"] < 6 and seg["isthing"] == (seg["category_id"] in (4, 5))
    meta = MetadataCatalog.get("toy_panoptic_train")
    assert meta.evaluator_type == "coco_panoptic_seg"
    assert meta.thing_dataset_id_to_contiguous_id == {5: 4, 6: 5}
    assert meta.panoptic_json == os.path.join(root, BASE, "ade20k_panoptic_train.json")
    instances = DatasetCatalog.get("toy_instance_val")
    assert len(instances) == 3
    assert MetadataCatalog.get("toy_instance_val").thing_classes == ["car", "person"]
    for ann in (a for r in instances for a in r["annotations"]):
        assert ann["category_id"] in (0, 1) and ann["bbox_mode"] == "XYWH_ABS" and ann["iscrowd"] == 0


def test_panoptic_output_only_adds_files(tmp_path):
    """An existing semantic toy tree (written before panoptic output) gains the panoptic files, byte for byte
    unchanged otherwise; a second run writes nothing."""
    root = str(tmp_path)
    assert generate_toy_dataset(root, PARAMS)
    before = tree_hashes(root, skip=("ade20k_panoptic", "ade20k_instance", "panoptic_meta"))
    for path in tree_hashes(root):
        if "ade20k_panoptic" in path or "ade20k_instance" in path or "panoptic_meta" in path:
            os.remove(os.path.join(root, path))
    assert generate_toy_dataset(root, PARAMS)  # the semantic part is complete: only the panoptic part is written
    after = tree_hashes(root)
    assert {k: v for k, v in after.items() if k in before} == before
    assert len(after) > len(before)
    assert not generate_toy_dataset(root, PARAMS)
    assert not generate_toy_panoptic(root, PARAMS)
    assert tree_hashes(root) == after
