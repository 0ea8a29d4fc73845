"""InstanceSegEvaluator (COCOeval segm) on a tiny hand-built ground truth where every AP can be worked out."""

import json
import math
import os
import socket

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from freemask.data.catalog import MetadataCatalog
from freemask.data.errors import DatasetError
from freemask.evaluation.instance_evaluator import InstanceSegEvaluator, thing_categories

CATEGORIES = [{"id": 11, "contiguous_id": 0, "name": "car"}, {"id": 12, "contiguous_id": 1, "name": "person"}]


def box(r0, r1, c0, c1):
    m = np.zeros((8, 8), dtype=bool)
    m[r0:r1, c0:c1] = True
    return m


# Image 1: car A (top left) and person P (bottom right); image 2: car B (top right). All 16 px: "small" (< 32²).
CAR_A, PERSON_P, CAR_B = box(0, 4, 0, 4), box(4, 8, 4, 8), box(0, 4, 4, 8)
GT = {1: [(CAR_A, 0), (PERSON_P, 1)], 2: [(CAR_B, 0)]}


def rle(mask):
    out = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    out["counts"] = out["counts"].decode("ascii")
    return out


def write_json(path):
    annotations = []
    for image_id, objects in GT.items():
        for mask, label in objects:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": 11 + label,
                    "segmentation": rle(mask),
                    "area": float(mask.sum()),
                    "bbox": mask_util.toBbox(rle(mask)).tolist(),
                    "iscrowd": 0,
                }
            )
    data = {
        "images": [{"id": i, "height": 8, "width": 8, "file_name": f"img_{i}.jpg"} for i in GT],
        "annotations": annotations,
        "categories": [{"id": 11, "name": "car"}, {"id": 12, "name": "person"}],
    }
    path.write_text(json.dumps(data))
    return str(path)


def outputs(detections):
    """detections: [(mask, class, score)] -> one model output."""
    masks = torch.as_tensor(np.stack([d[0] for d in detections])) if detections else torch.zeros(0, 8, 8, dtype=bool)
    return [
        {
            "instances": {
                "pred_masks": masks,
                "pred_classes": torch.tensor([d[1] for d in detections]),
                "scores": torch.tensor([d[2] for d in detections]),
            }
        }
    ]


def run(evaluator, per_image):
    evaluator.reset()
    for image_id, detections in per_image.items():
        evaluator.process([{"image_id": image_id, "file_name": f"img_{image_id}.jpg"}], outputs(detections))
    return evaluator.evaluate()["segm"]


def check(result, expected):
    for key, value in expected.items():
        if math.isnan(value):
            assert math.isnan(result[key]), key
        else:
            assert result[key] == pytest.approx(value, abs=1e-6), key


# Duplicates: car A at 0.9, the same mask again at 0.8 (an FP: A is already matched), car B at 0.7, person at 0.95.
# car in score order: TP, FP, TP -> precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1; COCO's interpolated precision is
# 1 on the 51 recall thresholds 0..0.50 and 2/3 on the 50 thresholds 0.51..1 -> AP-car = (51 + 50 * 2/3) / 101
# = 83.498 at every IoU threshold (masks are exact); person 100; AP = (83.498 + 100) / 2.
DUPLICATES = {1: [(CAR_A, 0, 0.9), (CAR_A, 0, 0.8), (PERSON_P, 1, 0.95)], 2: [(CAR_B, 0, 0.7)]}
AP_CAR_DUP = 100 * (51 + 50 * 2 / 3) / 101
EXPECTED_DUP = {"AP": (AP_CAR_DUP + 100) / 2, "AP50": (AP_CAR_DUP + 100) / 2, "AP-car": AP_CAR_DUP, "AP-person": 100.0}


def test_perfect_predictions_give_100(tmp_path):
    evaluator = InstanceSegEvaluator(CATEGORIES, json_file=write_json(tmp_path / "instances.json"))
    result = run(evaluator, {1: [(CAR_A, 0, 0.9), (PERSON_P, 1, 0.5)], 2: [(CAR_B, 0, 0.3)]})
    # Every object is small: APm and APl have no ground truth and are undefined (NaN), as detectron2 reports.
    check(
        result,
        {
            "AP": 100.0,
            "AP50": 100.0,
            "AP75": 100.0,
            "APs": 100.0,
            "APm": math.nan,
            "APl": math.nan,
            "AP-car": 100.0,
            "AP-person": 100.0,
        },
    )
    assert list(result)[:6] == ["AP", "AP50", "AP75", "APs", "APm", "APl"]


def test_wrong_class_gives_0_for_that_class(tmp_path):
    # Only image 1 is evaluated (image 2's car is not counted as missed). Car A is predicted as a person (0.8),
    # after the real person (0.9): car has no detection -> AP-car 0; person: TP then FP -> precision 1 up to
    # recall 1 -> AP-person 100. AP = (0 + 100) / 2 = 50.
    evaluator = InstanceSegEvaluator(CATEGORIES, json_file=write_json(tmp_path / "instances.json"))
    result = run(evaluator, {1: [(PERSON_P, 1, 0.9), (CAR_A, 1, 0.8)]})
    check(result, {"AP": 50.0, "AP-car": 0.0, "AP-person": 100.0})


def test_duplicates_lower_precision(tmp_path):
    output_dir = tmp_path / "inference"
    evaluator = InstanceSegEvaluator(
        CATEGORIES,
        json_file=write_json(tmp_path / "instances.json"),
        output_dir=str(output_dir),
        save_predictions=True,
    )
    result = run(evaluator, DUPLICATES)
    check(result, {**EXPECTED_DUP, "AP75": (AP_CAR_DUP + 100) / 2})
    assert sorted(os.listdir(output_dir)) == ["coco_instances_results.json", "instance_results.json"]
    saved = json.loads((output_dir / "instance_results.json").read_text())
    assert saved["AP-car"] == pytest.approx(AP_CAR_DUP) and saved["APm"] is None
    predictions = json.loads((output_dir / "coco_instances_results.json").read_text())
    assert [(p["image_id"], p["category_id"]) for p in predictions] == [(1, 11), (1, 11), (1, 12), (2, 11)]
    car_b = predictions[3]["segmentation"]
    assert car_b["size"] == [8, 8] and mask_util.area(car_b) == 16
    assert mask_util.toBbox(car_b).tolist() == [4, 0, 4, 4]  # x, y, width, height of rows 0-3, columns 4-7


def uncompressed_rle(mask):
    """COCO's uncompressed RLE: run lengths of the column-major pixels, starting with a run of zeros."""
    flat = mask.flatten(order="F").astype(int)
    changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    return {"size": list(mask.shape), "counts": np.diff(np.concatenate([[0], changes])).tolist()}


def test_ground_truth_from_records_equals_json(tmp_path):
    square = [[0.0, 0.0, 8.0, 0.0, 8.0, 8.0, 0.0, 8.0]]  # a polygon covering image 3 entirely
    records = [
        {
            "file_name": "img_1.jpg",
            "image_id": 1,
            "height": 8,
            "width": 8,
            "annotations": [
                {"category_id": 0, "segmentation": rle(CAR_A), "iscrowd": 0},
                {"category_id": 1, "segmentation": uncompressed_rle(PERSON_P), "iscrowd": 0},
            ],
        },
        {
            "file_name": "img_2.jpg",
            "image_id": 2,
            "height": 8,
            "width": 8,
            "annotations": [{"category_id": 0, "segmentation": rle(CAR_B), "iscrowd": 0}],
        },
        {
            "file_name": "img_3.jpg",
            "image_id": 3,
            "height": 8,
            "width": 8,
            "annotations": [{"category_id": 1, "segmentation": square, "iscrowd": 0}],
        },
    ]
    evaluator = InstanceSegEvaluator(CATEGORIES, records=records)
    check(run(evaluator, DUPLICATES), EXPECTED_DUP)
    # The polygon rasterises to the whole image; an input found by file name alone.
    evaluator.reset()
    evaluator.process([{"file_name": "img_3.jpg"}], outputs([(np.ones((8, 8), bool), 1, 0.5)]))
    check(evaluator.evaluate()["segm"], {"AP": 100.0, "AP-person": 100.0, "AP-car": math.nan})


def test_no_prediction_gives_nan(tmp_path):
    evaluator = InstanceSegEvaluator(CATEGORIES, json_file=write_json(tmp_path / "instances.json"))
    assert all(math.isnan(v) for v in run(evaluator, {1: [], 2: []}).values())


def test_bad_input_is_clear(tmp_path):
    json_file = write_json(tmp_path / "instances.json")
    evaluator = InstanceSegEvaluator(CATEGORIES, json_file=json_file)
    with pytest.raises(DatasetError, match=r"instances.json: no image with id 7 \(for img_7.jpg\)"):
        evaluator.process([{"image_id": 7, "file_name": "img_7.jpg"}], outputs([(CAR_A, 0, 0.5)]))
    with pytest.raises(ValueError, match=r"masks of shape \(1, 4, 8\), expected \(N, 8, 8\)"):
        evaluator.process([{"image_id": 1}], outputs([(CAR_A[:4], 0, 0.5)]))
    with pytest.raises(ValueError, match="class 5 is not a thing class"):
        evaluator.process([{"image_id": 1}], outputs([(CAR_A, 5, 0.5)]))
    with pytest.raises(DatasetError, match="missing.json: instances JSON not found"):
        InstanceSegEvaluator(CATEGORIES, json_file=str(tmp_path / "missing.json")).process(
            [{"image_id": 1}], outputs([])
        )


def test_seen_unseen_ap_is_the_mean_over_each_group(tmp_path):
    json_file = write_json(tmp_path / "instances.json")
    # car seen, person unseen: each group's AP is its one class's.
    evaluator = InstanceSegEvaluator(CATEGORIES, json_file=json_file, trainable_flag=[1, 0])
    check(run(evaluator, DUPLICATES), {**EXPECTED_DUP, "AP_seen": AP_CAR_DUP, "AP_unseen": 100.0})
    # Both things seen, the unseen class (2) a stuff class: AP_seen = (83.498 + 100) / 2, no unseen thing -> NaN.
    evaluator = InstanceSegEvaluator(CATEGORIES, json_file=json_file, trainable_flag=[1, 1, 0])
    check(run(evaluator, DUPLICATES), {"AP_seen": (AP_CAR_DUP + 100) / 2, "AP_unseen": math.nan})
    # Only image 2 (no person in its ground truth): COCOeval leaves AP-person undefined, so it is skipped and
    # AP_seen is car's alone, not NaN and not pulled down by a 0.
    result = run(evaluator, {2: [(CAR_B, 0, 0.7), (PERSON_P, 1, 0.6)]})
    check(result, {"AP-car": 100.0, "AP-person": math.nan, "AP_seen": 100.0})
    # No prediction at all: every AP, the group means included, is NaN.
    result = run(evaluator, {1: [], 2: []})
    assert math.isnan(result["AP_seen"]) and math.isnan(result["AP_unseen"])
    # Without a flag, or with only seen classes, the keys are as before.
    for flag in (None, [1, 1]):
        result = run(InstanceSegEvaluator(CATEGORIES, json_file=json_file, trainable_flag=flag), DUPLICATES)
        assert list(result) == ["AP", "AP50", "AP75", "APs", "APm", "APl", "AP-car", "AP-person"]


def test_seen_unseen_from_the_metadata(tmp_path):
    name = "_test_instance_seen_unseen"
    MetadataCatalog.get(name).set(
        thing_classes=["car", "person"],
        thing_dataset_id_to_contiguous_id={11: 0, 12: 1},
        json_file=write_json(tmp_path / "instances.json"),
        trainable_flag=[0, 1],
    )
    try:
        result = run(InstanceSegEvaluator.from_dataset(name), DUPLICATES)
        check(result, {"AP_seen": 100.0, "AP_unseen": AP_CAR_DUP})
        MetadataCatalog.remove(name)
        MetadataCatalog.get(name).set(
            thing_classes=["car", "person"], thing_dataset_id_to_contiguous_id={11: 0, 12: 1}, trainable_flag=[0]
        )
        with pytest.raises(DatasetError, match=f"dataset '{name}'.*trainable_flag has 1 entries for 2 classes"):
            InstanceSegEvaluator.from_dataset(name)
    finally:
        MetadataCatalog.remove(name)


def test_records_without_annotations_are_refused():
    records = [{"file_name": "img_1.jpg", "image_id": 1, "height": 8, "width": 8, "pan_seg_file_name": "p.png"}]
    with pytest.raises(DatasetError, match="no 'annotations'.*json_file"):
        InstanceSegEvaluator(CATEGORIES, records=records).process([{"image_id": 1}], outputs([]))


def test_thing_categories_from_metadata():
    name = "_test_instance_meta"
    MetadataCatalog.get(name).set(thing_classes=["car", "person"], thing_dataset_id_to_contiguous_id={11: 0, 12: 1})
    # Mask2Former's panoptic convention: one contiguous space, names in stuff_classes.
    MetadataCatalog.get(name + "_pan").set(
        stuff_classes=["sky", "car", "person"],
        thing_classes=["car", "person"],
        stuff_dataset_id_to_contiguous_id={3: 0, 11: 1, 12: 2},
        thing_dataset_id_to_contiguous_id={11: 1, 12: 2},
    )
    try:
        assert thing_categories(name) == CATEGORIES
        assert thing_categories(name + "_pan") == [
            {"id": 11, "contiguous_id": 1, "name": "car"},
            {"id": 12, "contiguous_id": 2, "name": "person"},
        ]
        with pytest.raises(ValueError, match="thing_dataset_id_to_contiguous_id"):
            thing_categories(name + "_none")
    finally:
        for suffix in ("", "_pan", "_none"):
            MetadataCatalog.remove(name + suffix)


def _distributed_worker(rank, world_size, port, json_file, output_dir, result_file):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        evaluator = InstanceSegEvaluator(CATEGORIES, json_file=json_file, output_dir=output_dir)
        image_id = rank + 1  # rank 0 evaluates image 1, rank 1 image 2
        torch.save(run(evaluator, {image_id: DUPLICATES[image_id]}), f"{result_file}.rank{rank}")
    finally:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ranks_gather_to_rank_0(tmp_path):
    json_file = write_json(tmp_path / "instances.json")
    output_dir, result_file = str(tmp_path / "inference"), str(tmp_path / "result")
    args = (2, free_port(), json_file, output_dir, result_file)
    mp.start_processes(_distributed_worker, args=args, nprocs=2, start_method="forkserver")  # as launch() does
    for rank in range(2):
        check(torch.load(f"{result_file}.rank{rank}", weights_only=False), EXPECTED_DUP)
    saved = json.loads((tmp_path / "inference" / "instance_results.json").read_text())
    assert saved["AP"] == pytest.approx(EXPECTED_DUP["AP"])
