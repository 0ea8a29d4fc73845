"""COCOPanopticEvaluator on a tiny registered panoptic dataset: metrics, files, bad input, two-rank gathering."""

import json
import math
import os
import socket

import cv2
import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from freemask.data.catalog import DatasetCatalog, MetadataCatalog
from freemask.data.errors import DatasetError
from freemask.data.panoptic_png import id2rgb, rgb2id
from freemask.evaluation.panoptic_evaluator import COCOPanopticEvaluator, panoptic_categories

# Dataset ids are not contiguous (as in COCO): car 11, person 12 (things), sky 23, road 24 (stuff).
DATASET_IDS = {11: 0, 12: 1, 23: 2, 24: 3}
THINGS = {11: 0, 12: 1}
CLASSES = ["car", "person", "sky", "road"]

# Two images (2 x 4 pixels). GT segment ids are large to exercise all three RGB channels.
GT = [
    np.array([[70000, 70000, 300, 300], [70000, 70000, 300, 300]]),  # car 0-1, sky 2-3
    np.array([[0, 5, 5, 5], [0, 5, 5, 9]]),  # void column 0, car 5 (5 px), road 9 (1 px)
]
GT_SEGMENTS = [  # contiguous category ids, as Mask2Former's dataset dicts carry them
    [{"id": 70000, "category_id": 0, "iscrowd": 0}, {"id": 300, "category_id": 2, "iscrowd": 0}],
    [{"id": 5, "category_id": 0, "iscrowd": 0}, {"id": 9, "category_id": 3, "iscrowd": 0}],
]
PRED = [
    np.array([[1, 1, 2, 2], [1, 1, 2, 2]]),  # perfect
    np.array([[1, 1, 1, 0], [1, 1, 1, 2]]),  # car on 0-2 of both rows (2 px on void), road 1 px
]
PRED_SEGMENTS = [
    [{"id": 1, "category_id": 0, "isthing": True, "score": 0.9}, {"id": 2, "category_id": 2, "isthing": False}],
    [{"id": 1, "category_id": 0, "isthing": True, "score": 0.8}, {"id": 2, "category_id": 3, "isthing": False}],
]
# Image 2: car intersection 4, prediction area 6 with 2 on void, GT area 5 -> union 6 + 5 - 4 - 2 = 5, IoU 0.8.
# road IoU 1. Over both images: car TP 2, ΣIoU 1.8 -> PQ = SQ = 90, RQ 100; sky 100; road 100; person NaN.
# All PQ = (90 + 100 + 100) / 3 = 96.67, things 90, stuff 100.
EXPECTED = {
    "PQ": 290 / 3,
    "SQ": 290 / 3,
    "RQ": 100.0,
    "PQ_th": 90.0,
    "PQ_st": 100.0,
    "PQ-car": 90.0,
    "PQ-sky": 100.0,
    "PQ-road": 100.0,
}


def write_png(path, ids):
    cv2.imwrite(str(path), id2rgb(ids)[..., ::-1])  # RGB -> OpenCV's BGR


def make_records(root):
    records = []
    for i, (gt, segments) in enumerate(zip(GT, GT_SEGMENTS)):
        png = root / f"pan_{i}.png"
        write_png(png, gt)
        records.append(
            {
                "file_name": str(root / f"img_{i}.jpg"),
                "pan_seg_file_name": str(png),
                "segments_info": [dict(s) for s in segments],
                "image_id": i,
                "height": 2,
                "width": 4,
            }
        )
    return records


@pytest.fixture
def dataset(tmp_path):
    name = f"_test_panoptic_{os.getpid()}_{tmp_path.name}"
    records = make_records(tmp_path)
    DatasetCatalog.register(name, lambda: records)
    MetadataCatalog.get(name).set(
        stuff_classes=CLASSES,
        thing_classes=CLASSES[:2],
        stuff_dataset_id_to_contiguous_id=DATASET_IDS,
        thing_dataset_id_to_contiguous_id=THINGS,
        panoptic_json="annotations/pan.json",
    )
    yield name, records
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def outputs(i):
    return [{"panoptic_seg": (torch.as_tensor(PRED[i], dtype=torch.int32), [dict(s) for s in PRED_SEGMENTS[i]])}]


def run(evaluator, indices, inputs_of=lambda i: [{"file_name": f"img_{i}", "image_id": i}]):
    evaluator.reset()
    for i in indices:
        evaluator.process(inputs_of(i), outputs(i))
    return evaluator.evaluate()["panoptic_seg"]


def check(result, expected):
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=1e-7), key


def test_categories_from_metadata(dataset):
    name, _ = dataset
    cats = panoptic_categories(name)
    assert [(c["id"], c["contiguous_id"], c["name"], c["isthing"]) for c in cats] == [
        (11, 0, "car", True),
        (12, 1, "person", True),
        (23, 2, "sky", False),
        (24, 3, "road", False),
    ]
    with pytest.raises(ValueError, match="lacks panoptic metadata"):
        panoptic_categories(name + "_none")
    MetadataCatalog.remove(name + "_none")


def test_hand_computed_metrics_and_results_file(dataset, tmp_path):
    name, _ = dataset
    out_dir = tmp_path / "run" / "inference"
    evaluator = COCOPanopticEvaluator.from_dataset(name, str(out_dir), "cpu")
    result = run(evaluator, [0, 1])  # ground truth looked up in the records by image_id
    check(result, EXPECTED)
    assert math.isnan(result["PQ-person"])
    assert os.listdir(out_dir) == ["panoptic_results.json"]  # no temporary file left behind
    saved = json.loads((out_dir / "panoptic_results.json").read_text())
    assert list(saved) == list(result) and saved["PQ-person"] is None
    assert saved["PQ"] == pytest.approx(290 / 3)
    # Evaluating again is unchanged; reset forgets.
    check(evaluator.evaluate()["panoptic_seg"], EXPECTED)
    evaluator.reset()
    assert math.isnan(evaluator.evaluate()["panoptic_seg"]["PQ"])


def test_seen_unseen_from_the_trainable_flag(dataset, tmp_path, caplog):
    name, _ = dataset
    MetadataCatalog.get(name).set(trainable_flag=[1, 0, 1, 0])  # car, sky seen; person, road unseen
    evaluator = COCOPanopticEvaluator.from_dataset(name, str(tmp_path))
    with caplog.at_level("INFO", logger="freemask"):
        result = run(evaluator, [0, 1])
    # Seen: car 90 / 90 / 100 and sky 100. Unseen: road 100; person has no TP/FP/FN and is left out (not a 0).
    seen = {"PQ_seen": 95.0, "SQ_seen": 95.0, "RQ_seen": 100.0}
    check(result, {**seen, "PQ_unseen": 100.0, "SQ_unseen": 100.0, "RQ_unseen": 100.0, **EXPECTED})
    saved = json.loads((tmp_path / "panoptic_results.json").read_text())
    assert saved["PQ_seen"] == pytest.approx(95.0) and saved["RQ_unseen"] == pytest.approx(100.0)
    assert "| Seen   |" in caplog.text and "| Unseen |" in caplog.text
    # A wrong flag is a one-line DatasetError naming the dataset.
    MetadataCatalog.remove(name)
    MetadataCatalog.get(name).set(
        stuff_classes=CLASSES,
        stuff_dataset_id_to_contiguous_id=DATASET_IDS,
        thing_dataset_id_to_contiguous_id=THINGS,
        trainable_flag=[1, 0],
    )
    with pytest.raises(DatasetError, match=f"dataset '{name}'.*trainable_flag has 2 entries for 4 classes"):
        COCOPanopticEvaluator.from_dataset(name)


def test_no_seen_unseen_keys_without_a_flag(dataset):
    result = run(COCOPanopticEvaluator.from_dataset(dataset[0]), [0, 1])
    assert not [k for k in result if "seen" in k]


def test_ground_truth_from_the_inputs(dataset):
    name, records = dataset
    evaluator = COCOPanopticEvaluator(panoptic_categories(name))  # no records: the inputs carry the GT
    check(run(evaluator, [0, 1], inputs_of=lambda i: [records[i]]), EXPECTED)
    # By file name when the input has no image_id.
    evaluator = COCOPanopticEvaluator(panoptic_categories(name), records=records)
    check(run(evaluator, [0, 1], inputs_of=lambda i: [{"file_name": records[i]["file_name"]}]), EXPECTED)


def test_ground_truth_with_dataset_category_ids(dataset):
    # Records read straight from a COCO panoptic JSON (dataset ids 11 / 23 / 24) instead of Mask2Former's dicts.
    name, records = dataset
    to_dataset = {c: d for d, c in DATASET_IDS.items()}
    coco_records = [
        {**r, "segments_info": [{**s, "category_id": to_dataset[s["category_id"]]} for s in r["segments_info"]]}
        for r in records
    ]
    evaluator = COCOPanopticEvaluator(panoptic_categories(name), records=coco_records, gt_contiguous_ids=False)
    check(run(evaluator, [0, 1]), EXPECTED)
    with pytest.raises(DatasetError, match="category_id 0, not among the dataset's dataset ids"):
        COCOPanopticEvaluator(panoptic_categories(name), gt_contiguous_ids=False).process([records[0]], outputs(0))


def test_saved_predictions_in_coco_format(dataset, tmp_path):
    name, _ = dataset
    out_dir = tmp_path / "inference"
    evaluator = COCOPanopticEvaluator.from_dataset(name, str(out_dir), save_predictions=True)
    run(evaluator, [0, 1])
    folder = out_dir / "panoptic"
    assert sorted(os.listdir(folder)) == ["img_0.png", "img_1.png", "panoptic_predictions.json"]
    for i in range(2):
        png = cv2.imread(str(folder / f"img_{i}.png"), cv2.IMREAD_COLOR)[..., ::-1]
        assert np.array_equal(rgb2id(png), PRED[i])
    saved = json.loads((folder / "panoptic_predictions.json").read_text())
    second = saved["annotations"][1]
    assert (second["image_id"], second["file_name"]) == (1, "img_1.png")
    assert second["segments_info"] == [
        {"id": 1, "category_id": 11, "score": 0.8, "iscrowd": 0, "area": 6},  # dataset ids, not contiguous
        {"id": 2, "category_id": 24, "iscrowd": 0, "area": 1},
    ]
    assert {"id": 23, "name": "sky", "isthing": 0} in saved["categories"]


def test_bad_ground_truth_gives_one_line_naming_the_file(dataset, tmp_path):
    name, records = dataset
    categories = panoptic_categories(name)

    def evaluate_record(record):
        evaluator = COCOPanopticEvaluator(categories, annotation_file="annotations/pan.json")
        evaluator.process([record], outputs(0))

    # A segment id in the PNG that the JSON does not list.
    record = {**records[0], "segments_info": records[0]["segments_info"][:1]}
    with pytest.raises(DatasetError) as e:
        evaluate_record(record)
    message = str(e.value)
    assert "\n" not in message and message.startswith(records[0]["pan_seg_file_name"])
    assert "segment ids 300 (RGB 44,1,0) are in the PNG but not in the segments_info of annotations/pan.json" in message

    # The JSON names a PNG that does not exist.
    record = {**records[0], "pan_seg_file_name": str(tmp_path / "missing.png")}
    with pytest.raises(DatasetError, match=r"missing.png: panoptic PNG not found, but annotations/pan.json names it"):
        evaluate_record(record)

    # A single-channel label map given as the panoptic PNG.
    gray = tmp_path / "semantic.png"
    cv2.imwrite(str(gray), np.zeros((2, 4), np.uint8))
    with pytest.raises(
        DatasetError, match=r"semantic.png: 1-channel uint8 PNG, but a panoptic PNG is 8-bit RGB"
    ):
        evaluate_record({**records[0], "pan_seg_file_name": str(gray)})

    # A category id outside the metadata.
    record = {**records[0], "segments_info": [records[0]["segments_info"][0], {"id": 300, "category_id": 7}]}
    with pytest.raises(DatasetError, match=r"pan_0.png: segment 300 has category_id 7, not among the dataset's"):
        evaluate_record(record)


def test_bad_predictions_are_clear(dataset):
    name, records = dataset
    evaluator = COCOPanopticEvaluator(panoptic_categories(name))
    bad = [{"panoptic_seg": (torch.as_tensor(PRED[0]), [{"id": 1, "category_id": 9}, {"id": 2, "category_id": 2}])}]
    with pytest.raises(ValueError, match="category_id 9, not a class index of the dataset .0..3.; check MODEL"):
        evaluator.process([records[0]], bad)
    small = [{"panoptic_seg": (torch.ones(1, 4, dtype=torch.int32), [{"id": 1, "category_id": 0}])}]
    with pytest.raises(ValueError, match=r"shape \(1, 4\) but its panoptic ground truth .*pan_0.png is \(2, 4\)"):
        evaluator.process([records[0]], small)
    with pytest.raises(ValueError, match="matches no record"):
        COCOPanopticEvaluator(panoptic_categories(name), records=records).process([{"file_name": "x"}], outputs(0))


def _distributed_worker(rank, world_size, port, name_root, out_dir, result_file):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        from pathlib import Path

        records = make_records(Path(name_root) / f"rank{rank}")
        MetadataCatalog.get("_pan_dist").set(
            stuff_classes=CLASSES,
            stuff_dataset_id_to_contiguous_id=DATASET_IDS,
            thing_dataset_id_to_contiguous_id=THINGS,
        )
        evaluator = COCOPanopticEvaluator(
            panoptic_categories("_pan_dist"), records=records, output_dir=out_dir, save_predictions=True
        )
        result = run(evaluator, [rank])  # rank 0 evaluates image 0, rank 1 image 1
        torch.save(result, f"{result_file}.rank{rank}")
    finally:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ranks_gather_to_the_single_process_result(tmp_path):
    for rank in range(2):
        os.makedirs(tmp_path / f"rank{rank}")
    out_dir, result_file = str(tmp_path / "inference"), str(tmp_path / "result")
    args = (2, free_port(), str(tmp_path), out_dir, result_file)
    mp.start_processes(_distributed_worker, args=args, nprocs=2, start_method="forkserver")  # as launch() does
    for rank in range(2):
        check(torch.load(f"{result_file}.rank{rank}", weights_only=False), EXPECTED)
    assert json.loads((tmp_path / "inference" / "panoptic_results.json").read_text())["PQ"] == pytest.approx(290 / 3)
    saved = json.loads((tmp_path / "inference" / "panoptic" / "panoptic_predictions.json").read_text())
    assert [a["image_id"] for a in saved["annotations"]] == [0, 1]
