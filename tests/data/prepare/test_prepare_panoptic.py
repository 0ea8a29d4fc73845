"""Panoptic preparation on small fake trees: COCO panoptic -> semantic maps (contiguous ids, void 255), ADE20K
annotations + instance PNGs -> panoptic PNG/JSON and instance JSON (Mask2Former's files), through the shared CLI."""

import importlib.util
import json
import os
import pathlib

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from freemask.data.catalog import DatasetCatalog
from freemask.data.panoptic_png import id2rgb, read_panoptic_png
from freemask.data.prepare.panoptic import prepare_ade20k_panoptic, prepare_coco_panoptic_sem_seg
from freemask.data.prepare.sem_seg import prepare_ade20k

REPO = pathlib.Path(__file__).resolve().parents[3]
ADE = "ADEChallengeData2016"


def script_main(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "datasets" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture
def coco_root(tmp_path):
    ids = np.zeros((12, 10), np.int32)
    ids[2:6] = 9  # person (contiguous 0)
    ids[6:] = 70000  # rug-merged (contiguous 132)
    ids[8:, 5:] = 41  # a crowd of cars (contiguous 2): crowds are labelled too
    for split in ("train2017", "val2017"):
        pan = tmp_path / "coco" / f"panoptic_{split}"
        pan.mkdir(parents=True)
        anns = []
        for stem in ("000000000001", "000000000002"):
            cv2.imwrite(str(pan / f"{stem}.png"), id2rgb(ids)[..., ::-1])
            segs = [
                {"id": 9, "category_id": 1},
                {"id": 70000, "category_id": 200},
                {"id": 41, "category_id": 3, "iscrowd": 1},
            ]
            anns.append({"image_id": int(stem), "file_name": f"{stem}.png", "segments_info": segs})
        (tmp_path / "coco" / "annotations").mkdir(exist_ok=True)
        with open(tmp_path / "coco" / "annotations" / f"panoptic_{split}.json", "w") as f:
            json.dump({"images": [], "annotations": anns, "categories": []}, f)
    return tmp_path


def test_coco_semantic_maps(coco_root):
    result = prepare_coco_panoptic_sem_seg(str(coco_root), workers=0, progress=False)
    assert (result.converted, result.skipped, result.errors) == (4, 0, [])
    sem = cv2.imread(str(coco_root / "coco" / "panoptic_semseg_val2017" / "000000000002.png"), cv2.IMREAD_UNCHANGED)
    assert sem.dtype == np.uint8 and sem.shape == (12, 10)
    assert (sem[:2] == 255).all() and (sem[2:6] == 0).all() and (sem[6:8] == 132).all()
    assert (sem[8:, :5] == 132).all() and (sem[8:, 5:] == 2).all()
    again = prepare_coco_panoptic_sem_seg(str(coco_root), workers=2, progress=False)
    assert (again.converted, again.skipped) == (0, 4)


def test_coco_png_id_missing_from_json_is_one_error_per_file(coco_root):
    path = coco_root / "coco" / "annotations" / "panoptic_val2017.json"
    data = json.loads(path.read_text())
    data["annotations"][0]["segments_info"].pop(0)
    path.write_text(json.dumps(data))
    result = prepare_coco_panoptic_sem_seg(str(coco_root), workers=0, progress=False)
    assert result.converted == 3 and len(result.errors) == 1
    assert "000000000001.png" in result.errors[0] and "segment ids 9" in result.errors[0]


def test_coco_cli_exit_codes(coco_root, capsys):
    main = script_main("prepare_coco_panoptic_sem_seg")
    assert main(["--root", str(coco_root), "--workers", "1"]) == 0
    assert "converted 4, already done 0, failed 0" in capsys.readouterr().out
    os.remove(coco_root / "coco" / "panoptic_train2017" / "000000000002.png")
    assert main(["--root", str(coco_root), "--workers", "1"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "panoptic_train2017.json" in err and "000000000002.png" in err


def ade_scene():
    """Raw semantic (0 = unlabeled, 1 wall, 3 sky, 13 person, 21 car) and an RGB instance PNG for two persons and a
    car; instance classes 4 -> person (13), 9 -> car (21) (meta/ade20k_instance_100.json)."""
    sem = np.zeros((16, 16), np.uint8)
    sem[:8] = 3
    sem[8:] = 1
    sem[10:14, 2:6] = 13
    sem[10:14, 6:10] = 13
    sem[10:16, 11:16] = 21
    sem[15, 0] = 0
    ins = np.zeros((16, 16, 3), np.uint8)
    ins[10:14, 2:6] = (4, 1, 0)
    ins[10:14, 6:10] = (4, 2, 0)
    ins[10:16, 11:16] = (9, 3, 0)
    return sem, ins


@pytest.fixture
def ade_root(tmp_path, monkeypatch):
    sem, ins = ade_scene()
    for folder, prefix in (("training", "ADE_train"), ("validation", "ADE_val")):
        for sub in ("images", "annotations", "annotations_instance"):
            (tmp_path / ADE / sub / folder).mkdir(parents=True)
        for i in (1, 2):
            stem = f"{prefix}_{i:08d}"
            cv2.imwrite(str(tmp_path / ADE / "images" / folder / f"{stem}.jpg"), np.zeros((16, 16, 3), np.uint8))
            cv2.imwrite(str(tmp_path / ADE / "annotations" / folder / f"{stem}.png"), sem)
            cv2.imwrite(str(tmp_path / ADE / "annotations_instance" / folder / f"{stem}.png"), ins[..., ::-1])
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    return tmp_path


def test_ade20k_panoptic_and_instance_files(ade_root):
    result = prepare_ade20k_panoptic(str(ade_root), workers=0, progress=False)
    assert (result.converted, result.errors) == (4, [])
    with open(ade_root / ADE / "ade20k_panoptic_val.json") as f:
        data = json.load(f)
    assert len(data["categories"]) == 150 and sum(c["isthing"] for c in data["categories"]) == 100
    ann = data["annotations"][0]
    assert ann["image_id"] == "ADE_val_00000001" and data["images"][0]["height"] == 16
    cats = [(s["category_id"], s["area"]) for s in ann["segments_info"]]
    # stuff: wall (0) minus things and the unlabeled pixel, sky (2); things: two persons (12), a car (20)
    assert cats == [(0, 128 - 16 - 16 - 30 - 1), (2, 128), (12, 16), (12, 16), (20, 30)]
    ids = read_panoptic_png(str(ade_root / ADE / "ade20k_panoptic_val" / ann["file_name"]), ann["segments_info"])
    assert ids[15, 0] == 0 and (ids[:8] != 0).all()

    coco = COCO(str(ade_root / ADE / "ade20k_instance_val.json"))
    assert len(coco.getAnnIds()) == 6 and sorted({a["category_id"] for a in coco.dataset["annotations"]}) == [12, 20]
    assert len(coco.dataset["categories"]) == 100

    assert prepare_ade20k(str(ade_root), workers=0, progress=False).errors == []  # annotations_detectron2
    records = DatasetCatalog.get("ade20k_panoptic_val")
    assert [s["isthing"] for s in records[0]["segments_info"]] == [False, False, True, True, True]
    instances = DatasetCatalog.get("ade20k_instance_train")
    assert len(instances) == 2 and len(instances[0]["annotations"]) == 3

    again = prepare_ade20k_panoptic(str(ade_root), workers=2, progress=False)
    assert (again.converted, again.skipped) == (0, 4)
    forced = prepare_ade20k_panoptic(str(ade_root), workers=2, force=True, progress=False)
    assert forced.converted == 4
    with open(ade_root / ADE / "ade20k_panoptic_val.json") as f:
        assert json.load(f) == data


def test_ade20k_bad_instance_png_is_one_line_naming_it(ade_root, capsys):
    bad = ade_root / ADE / "annotations_instance" / "validation" / "ADE_val_00000002.png"
    ins = np.zeros((16, 16, 3), np.uint8)
    ins[:2, :2] = (4, 1, 0)
    ins[2:4, :2] = (8, 1, 0)  # one instance index with two classes
    cv2.imwrite(str(bad), ins[..., ::-1])
    main = script_main("prepare_ade20k_panoptic")
    assert main(["--root", str(ade_root), "--workers", "1"]) == 1
    out = capsys.readouterr()
    assert "failed 1" in out.out and str(bad) in out.err
    assert not (ade_root / ADE / "ade20k_panoptic_val.json").exists()  # the split is redone on the next run
    assert (ade_root / ADE / "ade20k_panoptic_train.json").exists()
    assert main(["--root", str(ade_root / "nowhere")]) == 1
    assert "ADE20K images not found" in capsys.readouterr().err
