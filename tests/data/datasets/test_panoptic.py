"""Panoptic and instance loaders: COCO and ADE20K records from small fake trees, metadata as Mask2Former keeps it,
and one clear line naming the file for each bad input (PNG id missing from the JSON, JSON naming a missing PNG,
a category outside the metadata)."""

import json
import os

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_util

from freemask.data.catalog import DatasetCatalog, Metadata, MetadataCatalog
from freemask.data.datasets.ade20k_panoptic import ade20k_panoptic_categories
from freemask.data.datasets.coco_panoptic import coco_panoptic_categories
from freemask.data.errors import DatasetError
from freemask.data.panoptic_png import id2rgb, read_panoptic_png, rgb2id

SPLITS = ("train2017", "val2017")
PERSON, CAR, WALL_OTHER = 1, 3, 199  # COCO panoptic ids (contiguous 0, 2, 131)


def write_png_ids(path, ids):
    cv2.imwrite(str(path), id2rgb(ids)[..., ::-1])


def panoptic_scene():
    """(16, 20) ids: a wall (stuff), a person and a crowd of cars (things), void in the top row."""
    ids = np.full((16, 20), 7, np.int32)
    ids[4:10, 2:8] = 300
    ids[8:14, 10:18] = 5000
    ids[0] = 0
    segments = [
        {"id": 7, "category_id": WALL_OTHER, "iscrowd": 0, "area": 1, "bbox": [0, 1, 20, 15]},
        {"id": 300, "category_id": PERSON, "iscrowd": 0, "area": 36, "bbox": [2, 4, 6, 6]},
        {"id": 5000, "category_id": CAR, "iscrowd": 1, "area": 48, "bbox": [10, 8, 8, 6]},
    ]
    return ids, segments


@pytest.fixture
def coco_root(tmp_path, monkeypatch):
    """coco/{train,val}2017, panoptic_*, annotations/{panoptic,instances}_*.json, panoptic_semseg_* (2 images)."""
    coco = tmp_path / "coco"
    (coco / "annotations").mkdir(parents=True)
    ids, segments = panoptic_scene()
    for split in SPLITS:
        for sub in (split, f"panoptic_{split}", f"panoptic_semseg_{split}"):
            (coco / sub).mkdir()
        images, anns, instances = [], [], []
        for image_id in (139, 285):
            stem = f"{image_id:012d}"
            cv2.imwrite(str(coco / split / f"{stem}.jpg"), np.zeros((16, 20, 3), np.uint8))
            write_png_ids(coco / f"panoptic_{split}" / f"{stem}.png", ids)
            cv2.imwrite(str(coco / f"panoptic_semseg_{split}" / f"{stem}.png"), np.zeros((16, 20), np.uint8))
            images.append({"id": image_id, "file_name": f"{stem}.jpg", "height": 16, "width": 20})
            anns.append({"image_id": image_id, "file_name": f"{stem}.png", "segments_info": segments})
            rle = mask_util.encode(np.asfortranarray((ids == 5000).astype(np.uint8)))
            rle["counts"] = rle["counts"].decode()
            instances += [
                {
                    "id": 2 * image_id,
                    "image_id": image_id,
                    "category_id": PERSON,
                    "iscrowd": 0,
                    "area": 36.0,
                    "bbox": [2, 4, 6, 6],
                    "segmentation": [[2, 4, 8, 4, 8, 10, 2, 10]],
                },
                {
                    "id": 2 * image_id + 1,
                    "image_id": image_id,
                    "category_id": CAR,
                    "iscrowd": 1,
                    "area": 48.0,
                    "bbox": [10, 8, 8, 6],
                    "segmentation": rle,
                },
            ]
        categories = [{"id": c, "name": str(c), "isthing": int(c < 100)} for c in (PERSON, CAR, WALL_OTHER)]
        with open(coco / "annotations" / f"panoptic_{split}.json", "w") as f:
            json.dump({"images": images, "annotations": anns, "categories": categories}, f)
        with open(coco / "annotations" / f"instances_{split}.json", "w") as f:
            json.dump({"images": images, "annotations": instances, "categories": categories[:2]}, f)
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    return tmp_path


def test_id_encoding_round_trips():
    ids = np.array([[0, 1, 255], [256, 65535, 2**24 - 1]])
    assert np.array_equal(rgb2id(id2rgb(ids)), ids)
    assert id2rgb(np.array([[256 + 2]]))[0, 0].tolist() == [2, 1, 0]


def test_coco_panoptic_records_and_metadata(coco_root):
    records = DatasetCatalog.get("coco_2017_val_panoptic_with_sem_seg")
    assert [r["image_id"] for r in records] == [139, 285]
    rec = records[0]
    base = coco_root / "coco"
    assert rec["file_name"] == str(base / "val2017" / "000000000139.jpg")
    assert rec["pan_seg_file_name"] == str(base / "panoptic_val2017" / "000000000139.png")
    assert rec["sem_seg_file_name"] == str(base / "panoptic_semseg_val2017" / "000000000139.png")
    assert (rec["height"], rec["width"], rec["reduce_zero_label"]) == (16, 20, False)
    assert [(s["id"], s["category_id"], s["isthing"], s["iscrowd"]) for s in rec["segments_info"]] == [
        (7, 131, False, 0),
        (300, 0, True, 0),
        (5000, 2, True, 1),
    ]
    ids = read_panoptic_png(rec["pan_seg_file_name"], rec["segments_info"])
    assert ids.dtype == np.int32 and set(np.unique(ids).tolist()) == {0, 7, 300, 5000}
    assert "sem_seg_file_name" not in DatasetCatalog.get("coco_2017_train_panoptic")[0]

    meta = MetadataCatalog.get("coco_2017_val_panoptic_with_sem_seg")
    assert meta.evaluator_type == "coco_panoptic_seg"
    assert len(meta.stuff_classes) == 133 and len(meta.thing_classes) == 80
    assert meta.thing_dataset_id_to_contiguous_id[90] == 79 and len(meta.stuff_dataset_id_to_contiguous_id) == 133
    assert meta.stuff_dataset_id_to_contiguous_id[200] == 132
    assert meta.panoptic_json == str(base / "annotations" / "panoptic_val2017.json")
    assert meta.panoptic_root == str(base / "panoptic_val2017")
    assert meta.json_file == str(base / "annotations" / "instances_val2017.json")
    assert meta.sem_seg_root == str(base / "panoptic_semseg_val2017")


def test_metadata_paths_follow_the_datasets_root(coco_root, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", "/elsewhere")
    assert MetadataCatalog.get("coco_2017_train_panoptic").panoptic_root == "/elsewhere/coco/panoptic_train2017"
    assert MetadataCatalog.get("coco_2017_train_panoptic").as_dict()["image_root"] == "/elsewhere/coco/train2017"


def test_lazy_metadata_cannot_be_overwritten():
    meta = Metadata("x").set_lazy(root=lambda: "a")
    assert meta.root == "a" and meta.get("root") == "a"
    with pytest.raises(ValueError, match="computed"):
        meta.root = "b"
    with pytest.raises(ValueError, match="already set"):
        Metadata("y").set(root="a").set_lazy(root=lambda: "b")


def test_coco_instance_records(coco_root):
    records = DatasetCatalog.get("coco_2017_train")
    assert [r["image_id"] for r in records] == [139, 285]
    anns = records[0]["annotations"]
    assert [(a["category_id"], a["iscrowd"], a["bbox_mode"]) for a in anns] == [(0, 0, "XYWH_ABS"), (2, 1, "XYWH_ABS")]
    assert anns[0]["segmentation"] == [[2, 4, 8, 4, 8, 10, 2, 10]] and anns[1]["segmentation"]["size"] == [16, 20]
    assert anns[0]["bbox"] == [2.0, 4.0, 6.0, 6.0]
    meta = MetadataCatalog.get("coco_2017_train")
    assert meta.evaluator_type == "coco" and len(meta.thing_classes) == 80
    assert meta.thing_dataset_id_to_contiguous_id[3] == 2
    assert meta.json_file == str(coco_root / "coco" / "annotations" / "instances_train2017.json")


def test_png_id_missing_from_json_names_the_png(coco_root):
    rec = DatasetCatalog.get("coco_2017_val_panoptic")[0]
    with pytest.raises(DatasetError) as e:
        read_panoptic_png(rec["pan_seg_file_name"], rec["segments_info"][:2])
    message = str(e.value)
    assert "\n" not in message and message.startswith(rec["pan_seg_file_name"]) and "5000" in message


def test_json_naming_a_missing_png_names_both(coco_root):
    missing = coco_root / "coco" / "panoptic_val2017" / "000000000285.png"
    os.remove(missing)
    with pytest.raises(DatasetError) as e:
        DatasetCatalog.get("coco_2017_val_panoptic")
    message = str(e.value)
    assert "\n" not in message and "panoptic_val2017.json" in message and str(missing) in message


def test_category_outside_the_metadata_names_the_json(coco_root):
    path = coco_root / "coco" / "annotations" / "panoptic_val2017.json"
    data = json.loads(path.read_text())
    data["annotations"][1]["segments_info"][0]["category_id"] = 12  # not a COCO panoptic category
    path.write_text(json.dumps(data))
    with pytest.raises(DatasetError) as e:
        DatasetCatalog.get("coco_2017_val_panoptic")
    message = str(e.value)
    assert "\n" not in message and str(path) in message and "category_id 12" in message
    ins = coco_root / "coco" / "annotations" / "instances_val2017.json"
    data = json.loads(ins.read_text())
    data["annotations"][0]["category_id"] = 92  # a stuff id: not an instance category
    ins.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match="category_id 92") as e:
        DatasetCatalog.get("coco_2017_val")
    assert str(ins) in str(e.value)


def test_missing_dataset_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    with pytest.raises(DatasetError, match="panoptic JSON not found: .*panoptic_train2017.json; download"):
        DatasetCatalog.get("coco_2017_train_panoptic")
    with pytest.raises(DatasetError, match="prepare_ade20k_panoptic.py"):
        DatasetCatalog.get("ade20k_panoptic_val")
    with pytest.raises(DatasetError, match="instance JSON not found"):
        DatasetCatalog.get("ade20k_instance_train")


def test_category_tables():
    coco = coco_panoptic_categories()
    assert coco.ids[:3] == (1, 2, 3) and coco.names[-1] == "rug-merged" and sum(coco.isthing) == 80
    ade = ade20k_panoptic_categories()
    assert ade.ids == tuple(range(150)) and sum(ade.isthing) == 100
    # Mask2Former's split: wall, building, sky stuff; bed, window, person things; flag (149) a thing
    assert ade.isthing[:3] == (False, False, False) and ade.isthing[7] and ade.isthing[8] and ade.isthing[12]
    assert ade.isthing[149] and not ade.isthing[140]
    meta = MetadataCatalog.get("ade20k_panoptic_train")
    assert meta.evaluator_type == "ade20k_panoptic_seg" and len(meta.thing_classes) == 100
    assert MetadataCatalog.get("ade20k_instance_val").thing_dataset_id_to_contiguous_id[149] == 99
    for name in (
        "coco_2017_train_panoptic",
        "coco_2017_val_panoptic_with_sem_seg",
        "coco_2017_val",
        "ade20k_panoptic_train",
        "ade20k_instance_val",
        "toy_panoptic_val",
        "toy_instance_train",
    ):
        assert name in DatasetCatalog
