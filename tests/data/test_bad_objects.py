"""Bad panoptic segments and instance annotations (issue 24), planted in a copy of the toy dataset: training stops
with one line naming the annotation file (or, with DATALOADER.SKIP_BAD_SAMPLES, skips and counts the image),
evaluation stops too, and tools/check_dataset.py reports them by kind; no dataset file is modified."""

import hashlib
import importlib.util
import json
import pathlib
import shutil

import pytest
import torch

from freemask.config import get_cfg
from freemask.data import DatasetCatalog
from freemask.data.errors import DatasetError
from freemask.data.loading.build import build_test_loader, build_train_loader
from freemask.evaluation.panoptic_evaluator import COCOPanopticEvaluator

REPO = pathlib.Path(__file__).resolve().parents[2]
REAL = pathlib.Path("toy", "ADEChallengeData2016")
ABSENT_ID = 4242  # a segment id no toy PNG holds


@pytest.fixture
def toy_copy(toy_datasets, tmp_path, monkeypatch):
    """A copy of the toy datasets under DETECTRON2_DATASETS; yields its ADEChallengeData2016 folder."""
    root = tmp_path / "datasets"
    shutil.copytree(toy_datasets, root)
    monkeypatch.setenv("DETECTRON2_DATASETS", str(root))
    yield root / REAL


def edit_json(path: pathlib.Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def hashes(folder: pathlib.Path) -> dict:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def list_absent_segment(real: pathlib.Path) -> pathlib.Path:
    """Lists segment ABSENT_ID in the first training image's segments_info; returns that image's PNG."""

    def edit(data):
        segments = data["annotations"][0]["segments_info"]
        segments.append({**segments[0], "id": ABSENT_ID})

    edit_json(real / "ade20k_panoptic_train.json", edit)
    return real / "ade20k_panoptic_train" / "toy_train_00000.png"


def set_segmentation(real: pathlib.Path, segmentation) -> int:
    """Gives the first non-crowd annotation of ade20k_instance_train.json ``segmentation``; returns its id."""
    found = {}

    def edit(data):
        annotation = next(a for a in data["annotations"] if not a.get("iscrowd", 0))
        annotation["segmentation"] = segmentation
        found["id"] = annotation["id"]

    edit_json(real / "ade20k_instance_train.json", edit)
    return found["id"]


def train_cfg(config: str, skip: bool = False):
    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / "configs" / "toy" / config))
    cfg.merge_from_list(["SOLVER.IMS_PER_BATCH", "8", "DATALOADER.NUM_WORKERS", "0", "INPUT.CROP.SIZE", "[64, 64]",
                         "INPUT.MIN_SIZE_TRAIN", "(64,)", "DATALOADER.SKIP_BAD_SAMPLES", str(skip)])  # fmt: skip
    return cfg


def first_batch(cfg) -> list:
    return next(iter(build_train_loader(cfg)))  # 8 training images, batch 8: every image is in it


def load_tool():
    spec = importlib.util.spec_from_file_location("check_dataset_tool", REPO / "tools" / "check_dataset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------------------------- panoptic
def test_a_listed_segment_absent_from_its_png_stops_training_evaluation_and_the_checker(toy_copy, capsys):
    png = list_absent_segment(toy_copy)
    json_file = toy_copy / "ade20k_panoptic_train.json"
    before = hashes(toy_copy.parent.parent)

    with pytest.raises(DatasetError) as error:
        first_batch(train_cfg("panoptic-segmentation/mask2former_R18_toy_panoptic.yaml"))
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{png}: segments {ABSENT_ID} ")
    assert f"listed in the segments_info of {json_file}" in message and "no pixel in the PNG" in message

    batch = first_batch(train_cfg("panoptic-segmentation/mask2former_R18_toy_panoptic.yaml", skip=True))
    image = str(toy_copy / "images" / "training" / "toy_train_00000.jpg")
    assert [d["skipped"] for d in batch if "skipped" in d] == [[image]]  # replaced, and counted by the trainer
    assert image not in [d["file_name"] for d in batch]

    evaluator = COCOPanopticEvaluator.from_dataset("toy_panoptic_train")
    record = DatasetCatalog.get("toy_panoptic_train")[0]
    prediction = [{"panoptic_seg": (torch.zeros(64, 64, dtype=torch.int32), [])}]
    with pytest.raises(DatasetError, match=f"segments {ABSENT_ID} .* no pixel in the PNG"):
        evaluator.process([{"file_name": record["file_name"], "image_id": record["image_id"]}], prediction)

    assert load_tool().main(["toy_panoptic_train", "--workers", "1", "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "segment_ids_mismatch: 1" in out and "all datasets ok" not in out and str(png) in out
    assert hashes(toy_copy.parent.parent) == before  # nothing the user owns is modified


# ------------------------------------------------------------------------------------------------------- instance
def test_an_empty_segmentation_stops_training_with_one_line_naming_the_json(toy_copy):
    annotation_id = set_segmentation(toy_copy, [])
    json_file = toy_copy / "ade20k_instance_train.json"
    before = hashes(toy_copy.parent.parent)
    with pytest.raises(DatasetError) as error:
        first_batch(train_cfg("instance-segmentation/mask2former_R18_toy_instance.yaml"))
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{json_file}: annotation {annotation_id} of image ")
    assert "segmentation is empty ([])" in message and "SKIP_BAD_SAMPLES" in message

    batch = first_batch(train_cfg("instance-segmentation/mask2former_R18_toy_instance.yaml", skip=True))
    assert len(batch) == 8 and sum(len(d.get("skipped", ())) for d in batch) == 1
    assert hashes(toy_copy.parent.parent) == before


def test_an_invalid_rle_is_one_line_in_training_evaluation_and_the_checker(toy_copy, capsys):
    annotation_id = set_segmentation(toy_copy, {"size": [64, 64], "counts": "P[24l1000O"})  # cut short
    edit_json(toy_copy / "ade20k_instance_val.json", lambda d: d["annotations"][0].update(segmentation={
        "size": [64, 64], "counts": [5, 200]}))  # fmt: skip
    json_file = toy_copy / "ade20k_instance_train.json"
    before = hashes(toy_copy.parent.parent)

    with pytest.raises(DatasetError) as error:
        first_batch(train_cfg("instance-segmentation/mask2former_R18_toy_instance.yaml"))
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{json_file}: annotation {annotation_id} of image ")
    assert "invalid RLE" in message

    cfg = train_cfg("instance-segmentation/mask2former_R18_toy_instance.yaml")
    with pytest.raises(DatasetError, match="ade20k_instance_val.json: annotation .* invalid RLE: its run lengths add "
                                           "up to 205 pixels, not the 64x64 = 4096"):  # fmt: skip
        list(build_test_loader(cfg, "toy_instance_val"))  # before COCOeval meets it

    tool = load_tool()
    assert tool.main(["toy_instance_train", "toy_instance_val", "--workers", "2", "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "toy_instance_train: 8 images, 7 ok, 1 with problems" in out and "bad_annotation: 1" in out
    assert "toy_instance_val: 4 images, 3 ok, 1 with problems" in out
    assert hashes(toy_copy.parent.parent) == before


def test_check_dataset_checks_every_toy_split_kind(toy_datasets, monkeypatch, capsys):
    """Semantic, synthetic, panoptic, instance, open-vocabulary (all-task) and classification splits: all clean."""
    monkeypatch.setenv("DETECTRON2_DATASETS", toy_datasets)
    names = ["toy_sem_seg_val", "toy_syn_sem_seg_train", "toy_panoptic_val", "toy_instance_val", "toy_ov_val_base",
             "toy_ov_val_classification"]  # fmt: skip
    assert load_tool().main([*names, "--workers", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "all datasets ok" in out
    assert "toy_instance_val: 4 images, 4 ok" in out and "car" in out.split("toy_instance_val")[1]


def test_check_dataset_files_each_instance_problem_under_its_kind(toy_copy):
    """One annotation per kind in the instance training split: each filed under its kind, naming the JSON."""
    from freemask.data.check import check_dataset

    json_file = toy_copy / "ade20k_instance_train.json"

    def edit(data):
        non_crowd = [a for a in data["annotations"] if not a.get("iscrowd", 0)]
        non_crowd[0]["segmentation"] = [[1, 1, 5, 1, 5]]  # 5 numbers: not a polygon
        non_crowd[1]["segmentation"] = {"size": [64, 64], "counts": [4096]}  # an RLE of zeros
        non_crowd[2]["segmentation"] = {"size": [32, 64], "counts": [2048]}  # another size

    edit_json(json_file, edit)
    report = check_dataset("toy_instance_train", workers=0, progress=False)
    assert {kind: len(items) for kind, items in report.problems.items()} == {
        "size_mismatch": 1, "empty_annotation": 1, "bad_annotation": 1}  # fmt: skip
    assert all(path == str(json_file) for items in report.problems.values() for path, _ in items)
