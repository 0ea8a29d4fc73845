"""PASCAL VOC and COCO full-task preparation on tiny trees: VOC's label mapping (background and boundaries ignored,
every split folder written, val_base included), COCO's full-task segments (things from the panoptic PNG, stuff from
the stuffthingmap where no thing is) and the registered splits reading what the scripts wrote."""

import importlib.util
import json
import pathlib

import cv2
import numpy as np
import pytest

from freemask.data.catalog import DatasetCatalog, MetadataCatalog
from freemask.data.datasets.open_vocab import open_vocab_split
from freemask.data.mappers.binary import BinarySemanticMapper
from freemask.data.panoptic_png import id2rgb, read_panoptic_png
from freemask.data.prepare.coco_full import full_task_segments

REPO = pathlib.Path(__file__).resolve().parents[3]


def script(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "datasets" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def write(path: pathlib.Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


def read(path: pathlib.Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


# ------------------------------------------------------------------------------------------------------------ VOC
@pytest.fixture
def voc_root(tmp_path):
    voc = tmp_path / "VOC2012"
    for split, names in (("train", ["a", "b"]), ("val", ["c"])):
        (voc / f"{split}.txt").parent.mkdir(parents=True, exist_ok=True)
        (voc / f"{split}.txt").write_text("\n".join(names) + "\n")
        for i, name in enumerate(names):
            mask = np.zeros((6, 7), np.uint8)
            mask[1, :] = (1, 15, 16, 20, 255, 0, 7)  # aeroplane, person, pottedplant, tvmonitor, boundary, bg, car
            mask[2, 2] = 16 + i
            write(voc / "SegmentationClassAug" / f"{name}.png", mask)
            write(voc / "JPEGImages" / f"{name}.jpg", np.zeros((6, 7, 3), np.uint8))
    write(voc / "JPEGImages" / "not_in_any_split.jpg", np.zeros((6, 7, 3), np.uint8))
    return tmp_path


def test_voc_labels_splits_and_registration(voc_root, monkeypatch):
    assert script("prepare_voc_sem_seg")(["--root", str(voc_root), "--workers", "1"]) == 0
    out = voc_root / "VOC2012" / "annotations_detectron2"
    row = read(out / "val" / "c.png")[1]
    assert row.tolist() == [0, 14, 15, 19, 255, 255, 6]
    assert read(out / "val_base" / "c.png")[1].tolist() == [0, 14, 255, 255, 255, 255, 6]  # val_base exists
    assert read(out / "val_novel" / "c.png")[1].tolist() == [255, 255, 0, 4, 255, 255, 255]
    assert (read(out / "train" / "a.png")[0] == 255).all()  # background -> ignore
    for folder in ("train", "train_base", "train_novel", "val", "val_base", "val_novel"):
        assert len(list((out / folder).glob("*.png"))) == (1 if folder.startswith("val") else 2)
    counts = json.loads((out / "train_base_label_count.json").read_text())
    assert counts == {"a.png": [0, 6, 14], "b.png": [0, 6, 14]}
    assert json.loads((out / "train_novel_label_count.json").read_text())["b.png"] == [0, 1, 4]

    monkeypatch.setenv("DETECTRON2_DATASETS", str(voc_root))
    records = DatasetCatalog.get("voc_base_sem_seg_train")
    assert [pathlib.Path(r["file_name"]).name for r in records] == ["a.jpg", "b.jpg"]  # follows the masks
    meta = MetadataCatalog.get("voc_sem_seg_test")
    assert meta.trainable_flag == [1] * 15 + [0] * 5 and meta.evaluation_set == {"base": list(range(15))}
    assert len(MetadataCatalog.get("voc_base_sem_seg_train").stuff_classes) == 15
    stage1 = DatasetCatalog.get("voc_base_sem_seg_train_classification")
    assert [(pathlib.Path(r["file_name"]).name, r["category_id"]) for r in stage1] == [
        ("a.jpg", 0), ("a.jpg", 6), ("a.jpg", 14), ("b.jpg", 0), ("b.jpg", 6), ("b.jpg", 14)
    ]  # fmt: skip
    assert MetadataCatalog.get("voc_sem_seg_test_classification").evaluator_type == "classification"


def test_voc_missing_list_is_one_line(tmp_path, capsys):
    assert script("prepare_voc_sem_seg")(["--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "VOC2012/train.txt" in err[0] and "trainaug" in err[0]


# ------------------------------------------------------------------------------------------------------ COCO full
COW, PERSON, SKY_STUFF, ROAD_STUFF = 21, 1, 157, 149  # COCO ids (cow and road unseen)


def coco_scene():
    """(panoptic ids, panoptic segments, prepared stuffthingmap 0..170) of one (6, 8) image."""
    split = open_vocab_split("coco_stuff_171")
    contiguous = {cat: i for i, cat in enumerate(split.categories.ids)}
    pan = np.zeros((6, 8), np.int32)
    pan[1:3, 1:3] = 500  # a person
    pan[3:5, 4:7] = 600  # a cow (unseen thing)
    pan[5] = 700  # COCO panoptic stuff ("road" merged), replaced by the stuffthingmap's
    segments = [
        {"id": 500, "category_id": PERSON, "iscrowd": 0},
        {"id": 600, "category_id": COW, "iscrowd": 1},
        {"id": 700, "category_id": ROAD_STUFF, "iscrowd": 0},
    ]
    stuff = np.full((6, 8), contiguous[SKY_STUFF], np.uint8)
    stuff[5] = contiguous[ROAD_STUFF]
    stuff[1:3, 1:3] = contiguous[PERSON]
    stuff[0, 0] = 255
    return pan, segments, stuff


def test_full_task_segments_things_then_stuff():
    split = open_vocab_split("coco_stuff_171")
    pan, segments, stuff = coco_scene()
    stuff[3, 4] = 0  # the stuffthingmap says "person" under the cow: the panoptic cow wins
    ids, info = full_task_segments(pan, segments, stuff, split)
    assert [(s["id"], s["category_id"], s["iscrowd"]) for s in info] == [
        (1, PERSON, 0), (2, COW, 1), (3, ROAD_STUFF, 0), (4, SKY_STUFF, 0)
    ]  # fmt: skip  (stuff in class order)
    assert (ids[1:3, 1:3] == 1).all() and (ids[3:5, 4:7] == 2).all() and (ids[5] == 3).all() and ids[0, 0] == 0
    sky = (stuff == stuff[0, 1]) & (ids != 1) & (ids != 2)
    assert np.array_equal(ids == 4, sky)
    for seg in info:
        assert seg["area"] == int((ids == seg["id"]).sum())


@pytest.fixture
def coco_root(tmp_path):
    coco = tmp_path / "coco"
    images, annotations = [], []
    for folder in ("train2017", "val2017"):
        pan, segments, stuff = coco_scene()
        name = "000000000001"
        write(coco / folder / f"{name}.jpg", np.zeros((6, 8, 3), np.uint8))
        write(coco / f"panoptic_{folder}" / f"{name}.png", id2rgb(pan)[..., ::-1])
        raw = np.where(stuff == 255, 255, np.array(open_vocab_split("coco_stuff_171").categories.ids)[
            np.minimum(stuff, 170)] - 1).astype(np.uint8)  # fmt: skip
        write(coco / "stuffthingmaps_trainval2017" / folder / f"{name}.png", raw)
        images = [{"id": 1, "file_name": f"{name}.jpg", "height": 6, "width": 8}]
        annotations = [{"image_id": 1, "file_name": f"{name}.png", "segments_info": segments}]
        (coco / "annotations").mkdir(exist_ok=True)
        (coco / "annotations" / f"panoptic_{folder}.json").write_text(
            json.dumps({"images": images, "annotations": annotations, "categories": []})
        )
        instances = [{"id": 1, "image_id": 1, "category_id": PERSON}, {"id": 2, "image_id": 1, "category_id": COW}]
        cats = [{"id": PERSON, "name": "person"}, {"id": COW, "name": "cow"}]
        (coco / "annotations" / f"instances_{folder}.json").write_text(
            json.dumps({"images": images, "annotations": instances, "categories": cats})
        )
    return tmp_path


def test_coco_full_task_files_and_registration(coco_root, monkeypatch):
    assert script("prepare_coco_full_task")(["--root", str(coco_root), "--workers", "2"]) == 0  # a pool returns results
    out = coco_root / "coco" / "panoptic_detectron2"
    full = json.loads((out / "panoptic_val2017.json").read_text())
    assert len(full["categories"]) == 171
    assert [s["category_id"] for s in full["annotations"][0]["segments_info"]] == [PERSON, COW, ROAD_STUFF, SKY_STUFF]
    base = json.loads((out / "panoptic_val2017_base.json").read_text())
    assert [s["category_id"] for s in base["annotations"][0]["segments_info"]] == [PERSON, SKY_STUFF]
    ids = read_panoptic_png(str(out / "val2017_novel" / "000000000001.png"), [{"id": 2}, {"id": 3}])
    assert set(np.unique(ids).tolist()) == {0, 2, 3}
    novel_ins = json.loads((out / "instances_val2017_novel.json").read_text())
    assert [a["category_id"] for a in novel_ins["annotations"]] == [COW]
    assert (coco_root / "coco" / "stuffthingmaps_detectron2" / "train2017_base_label_count.json").is_file()

    monkeypatch.setenv("DETECTRON2_DATASETS", str(coco_root))
    split = open_vocab_split("coco_stuff_171")
    sky = int(split.to_kind("base")[split.categories.ids.index(SKY_STUFF)])  # 156 seen: 73 things, sky-other 59th stuff
    assert sky == 73 + 59
    record = DatasetCatalog.get("coco_2017_train_full_task_base")[0]
    assert [(s["category_id"], s["isthing"]) for s in record["segments_info"]] == [(0, True), (sky, False)]
    assert record["sem_seg_file_name"].endswith("stuffthingmaps_detectron2/train2017_base/000000000001.png")
    test = MetadataCatalog.get("coco_2017_test_full_task")
    assert len(test.stuff_classes) == 171 and sum(test.trainable_flag) == 156
    assert len(test.evaluation_set["novel_thing"]) == 7 and len(test.evaluation_set["novel_stuff"]) == 8
    assert test.json_file.endswith("coco/annotations/instances_val2017.json")
    assert len(MetadataCatalog.get("coco_2017_train_full_task_base").stuff_classes) == 156
    sem = DatasetCatalog.get("coco_2017_test_stuff_novel_sem_seg")
    road = int(split.to_kind("novel")[split.categories.ids.index(ROAD_STUFF)])
    assert np.unique(read(pathlib.Path(sem[0]["sem_seg_file_name"]))).tolist() == [road, 255]
    # FreeSeg's full-task stage-1 records: each seen class of the semantic map, the person instance, and the person
    # and sky-other panoptic segments (cow and road unseen), each naming its task
    stage1 = DatasetCatalog.get("coco_2017_train_full_task_base_classification")
    tasks = [(r["task"], r["category_id"]) for r in stage1]
    assert sorted(tasks[:2]) == [("sem_seg", 0), ("sem_seg", sky)]
    assert tasks[2:] == [("ins_seg", 0), ("pan_seg", 0), ("pan_seg", sky)]
    out = BinarySemanticMapper(is_train=False, size_test=8)(stage1[4])  # sky-other's segment of the panoptic PNG
    segment = read_panoptic_png(stage1[4]["pan_seg_file_name"], stage1[4]["segments_info"]) == stage1[4]["segment_id"]
    assert out["task"] == "pan_seg" and out["instances"]["gt_classes"].tolist() == [sky]
    # FreeSeg's box of a segment touching the right border ends at column 7 - 1 (exclusive), then the 8 px window
    rows, cols = segment.any(axis=1).nonzero()[0], segment.any(axis=0).nonzero()[0]
    assert cols[-1] == 7 and int(out["instances"]["gt_masks"].sum()) == int(segment[rows[0] : rows[-1] + 1, :7].sum())
