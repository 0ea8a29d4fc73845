"""SemSegEvaluator against hand-computed confusion matrices, its JSON file, and its cross-rank reduction."""

import json
import math
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from freemask.data.catalog import MetadataCatalog
from freemask.evaluation import SemSegEvaluator

IGNORE = 255


def sample(gt, pred, num_classes):
    """A (mapper input, model output) pair whose argmax is ``pred``."""
    gt, pred = torch.as_tensor(gt, dtype=torch.int64), torch.as_tensor(pred, dtype=torch.int64)
    scores = F.one_hot(pred, num_classes).permute(2, 0, 1).float()
    return {"file_name": "img.png", "sem_seg": gt}, {"sem_seg": scores}


def run(evaluator, pairs):
    for gt, pred in pairs:
        inp, out = sample(gt, pred, evaluator.num_classes)
        evaluator.process([inp], [out])
    return evaluator.evaluate()["sem_seg"]


def assert_same(a, b):
    assert list(a) == list(b)
    for key in a:
        assert (math.isnan(a[key]) and math.isnan(b[key])) or a[key] == pytest.approx(b[key], abs=1e-9), key


def test_hand_computed_metrics_with_ignore():
    # Pairs (gt, pred) over the 7 non-ignored pixels: (0,0) (0,1) (1,1) (1,1) (2,2) (1,0) (0,0)
    # confusion (row gt): [[2,1,0],[1,2,0],[0,0,1]] -> tp [2,2,1], gt [3,3,1], pred [3,3,1]
    gt = [[0, 0, 1, 1], [2, IGNORE, 1, 0]]
    pred = [[0, 1, 1, 1], [2, 2, 0, 0]]
    evaluator = SemSegEvaluator(3, IGNORE, ["a", "b", "c"])
    res = run(evaluator, [(gt, pred)])
    assert torch.equal(evaluator.conf_matrix, torch.tensor([[2, 1, 0], [1, 2, 0], [0, 0, 1]]))
    expected = {
        "IoU-a": 50.0,
        "IoU-b": 50.0,
        "IoU-c": 100.0,  # 2/(3+3-2), 2/4, 1/1
        "ACC-a": 200 / 3,
        "ACC-b": 200 / 3,
        "ACC-c": 100.0,
        "mIoU": 200 / 3,  # (0.5 + 0.5 + 1) / 3
        "mACC": 700 / 9,  # (2/3 + 2/3 + 1) / 3
        "pACC": 500 / 7,  # 5 correct of 7 (the ignored pixel is not counted)
        "fwIoU": 400 / 7,  # 3/7*0.5 + 3/7*0.5 + 1/7*1
    }
    assert set(res) == set(expected)
    for key, value in expected.items():
        assert res[key] == pytest.approx(value, abs=1e-9), key
    assert list(res)[:2] == ["mIoU", "fwIoU"]

    # Whatever is predicted on the ignored pixel changes nothing.
    evaluator.reset()
    other = [[0, 1, 1, 1], [2, 0, 0, 0]]
    assert_same(run(evaluator, [(gt, other)]), res)


def test_class_absent_from_gt_is_nan_and_left_out_of_means():
    # 4 classes: class 2 nowhere, class 3 predicted once but absent from gt.
    # pairs (0,0) (0,0) (0,3) (1,1): tp [2,1,0,0], gt [3,1,0,0], pred [2,1,0,1]
    evaluator = SemSegEvaluator(4, IGNORE, ["a", "b", "c", "d"])
    res = run(evaluator, [([[0, 0, 0, 1]], [[0, 0, 3, 1]])])
    assert res["IoU-a"] == pytest.approx(200 / 3) and res["IoU-b"] == 100.0
    assert math.isnan(res["IoU-c"]) and math.isnan(res["IoU-d"])
    assert math.isnan(res["ACC-c"]) and math.isnan(res["ACC-d"])
    assert res["mIoU"] == pytest.approx(250 / 3)  # (2/3 + 1) / 2, not / 4 and not with IoU-d = 0
    assert res["mACC"] == pytest.approx(250 / 3)
    assert res["pACC"] == pytest.approx(75.0)
    assert res["fwIoU"] == pytest.approx(75.0)  # 3/4*2/3 + 1/4*1


def test_json_written_atomically_with_null_for_nan(tmp_path):
    output_dir = tmp_path / "run" / "inference"  # what the trainer passes: OUTPUT_DIR/inference
    evaluator = SemSegEvaluator(3, IGNORE, ["a", "b", "c"], output_dir=str(output_dir))
    res = run(evaluator, [([[0, 1]], [[0, 0]])])
    path = output_dir / "sem_seg_results.json"
    assert os.listdir(output_dir) == ["sem_seg_results.json"]  # no temporary file left behind
    text = path.read_text()
    assert "NaN" not in text
    saved = json.loads(text)
    assert list(saved) == list(res)
    assert saved["IoU-c"] is None and math.isnan(res["IoU-c"])
    assert saved["mIoU"] == res["mIoU"] == 25.0  # IoU a = 1/2, b = 0


def test_reset_and_evaluate_twice():
    evaluator = SemSegEvaluator(2, IGNORE, ["a", "b"])
    first = run(evaluator, [([[0, 1, 1]], [[1, 1, 1]])])
    assert_same(evaluator.evaluate()["sem_seg"], first)  # evaluate does not change the state
    evaluator.reset()
    assert int(evaluator.conf_matrix.sum()) == 0
    second = run(evaluator, [([[0, 1, 1]], [[0, 1, 1]])])
    assert second["mIoU"] == 100.0


def random_images(seed, count, num_classes):
    g = torch.Generator().manual_seed(seed)
    images = []
    for i in range(count):
        h, w = 5 + i, 7 + 2 * i
        gt = torch.randint(0, num_classes, (h, w), generator=g)
        gt[torch.rand(h, w, generator=g) < 0.2] = IGNORE
        pred = torch.randint(0, num_classes, (h, w), generator=g)
        images.append((gt, pred))
    return images


def test_several_images_equal_one_big_image():
    images = random_images(0, 4, 5)
    names = list("abcde")
    separate = run(SemSegEvaluator(5, IGNORE, names), images)
    big_gt = torch.cat([gt.flatten() for gt, _ in images])[None]
    big_pred = torch.cat([pred.flatten() for _, pred in images])[None]
    assert_same(run(SemSegEvaluator(5, IGNORE, names), [(big_gt, big_pred)]), separate)


def test_user_errors_are_clear():
    evaluator = SemSegEvaluator(3, IGNORE, ["a", "b", "c"])
    inp, out = sample([[0, 7]], [[0, 1]], 3)
    with pytest.raises(ValueError, match="label 7, outside 0..2.*NUM_CLASSES"):
        evaluator.process([inp], [out])
    inp, out = sample([[0, 1]], [[0, 1]], 4)
    with pytest.raises(ValueError, match=r"expected \(3, 1, 2\)"):
        evaluator.process([inp], [out])


def test_from_dataset_reads_metadata():
    name = "_test_sem_seg_evaluator_meta"
    MetadataCatalog.get(name).set(stuff_classes=["x", "y"], ignore_label=7)
    try:
        evaluator = SemSegEvaluator.from_dataset(name, None, "cpu")
        assert (evaluator.num_classes, evaluator.ignore_label, evaluator.class_names) == (2, 7, ["x", "y"])
        with pytest.raises(ValueError, match="stuff_classes"):
            SemSegEvaluator.from_dataset(name + "_missing")
    finally:
        MetadataCatalog.remove(name)
        MetadataCatalog.remove(name + "_missing")


def _distributed_worker(rank, world_size, port, images, output_dir, result_file):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        evaluator = SemSegEvaluator(5, IGNORE, list("abcde"), output_dir=output_dir)
        res = run(evaluator, images[rank::world_size])
        assert_same(evaluator.evaluate()["sem_seg"], res)  # the reduction does not accumulate into the state
        torch.save(res, f"{result_file}.rank{rank}")
    finally:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_reduction_equals_single_process(tmp_path):
    images = random_images(1, 5, 5)
    expected = run(SemSegEvaluator(5, IGNORE, list("abcde")), images)
    output_dir = str(tmp_path / "inference")
    result_file = str(tmp_path / "result")
    args = (2, free_port(), images, output_dir, result_file)
    mp.start_processes(_distributed_worker, args=args, nprocs=2, start_method="forkserver")  # as launch() does
    for rank in range(2):
        assert_same(torch.load(f"{result_file}.rank{rank}", weights_only=False), expected)
    with open(os.path.join(output_dir, "sem_seg_results.json")) as f:
        saved = json.load(f)
    assert saved["mIoU"] == pytest.approx(expected["mIoU"], abs=1e-9)
