"""train_net.py on the toy panoptic and instance splits: one training run and --eval-only give mIoU, PQ and mask AP
from one pass (panoptic config) and mask AP alone (instance config, whose split has no semantic maps)."""

import json
import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAST = ["SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "2", "TEST.EVAL_PERIOD", "0", "TEST.VIS_IMAGES", "0",
        "DATALOADER.NUM_WORKERS", "0", "INPUT.CROP.SIZE", "[64, 64]", "INPUT.MIN_SIZE_TRAIN", "(64,)",
        "INPUT.MIN_SIZE_TEST", "64"]  # fmt: skip


def config(name):
    return os.path.join(REPO, "configs", "toy", f"{name}-segmentation", f"mask2former_R18_toy_{name}.yaml")


def read(output_dir, name):
    """The metrics of a results file, without ``produced_by`` (the weights and config, which differ by run)."""
    with open(os.path.join(output_dir, "inference", name)) as f:
        results = json.load(f)
    results.pop("produced_by")
    return results


THRESHOLDS = ["MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD", "0.0", "MODEL.MASK_FORMER.TEST.OVERLAP_THRESHOLD", "0.0"]


def trained_panoptic(trained_once):
    """The panoptic toy trained once for this module's tests: a few iterations at a higher rate and zero thresholds
    give the toy model real matches, and synthetic semantic pairs in every batch (DATALOADER.SYN_RATIO: per-class
    targets beside the real images' per-object ones), which the panoptic path must take as the semantic one does."""
    return trained_once("mask2former_R18_toy_panoptic", "--config-file", config("panoptic"), *FAST, *THRESHOLDS,
                        "SOLVER.MAX_ITER", "20", "SOLVER.BASE_LR", "0.005", "SOLVER.WARMUP_ITERS", "5",
                        "DATASETS.TRAIN_SYN", "('toy_syn_sem_seg_train',)", "DATALOADER.SYN_RATIO", "0.5")  # fmt: skip


def test_panoptic_config_trains_and_eval_only_reports_all_three_tasks(train_net, trained_once, tmp_path):
    run = trained_panoptic(trained_once)
    out = run.output_dir
    for line in ("Evaluation on toy_panoptic_val: mIoU=", "(panoptic_seg): PQ=", "(segm): AP="):
        assert line in run.log
    trained = {name: read(out, name) for name in ("panoptic_results.json", "instance_results.json")}
    metrics = [json.loads(line) for line in open(os.path.join(out, "metrics.json"))]
    final = metrics[-1]
    assert {"sem_seg/mIoU", "panoptic_seg/PQ", "panoptic_seg/PQ_th", "panoptic_seg/PQ_st", "segm/AP"} <= set(final)

    evaluated = str(tmp_path / "eval")
    weights = os.path.join(out, "model_final.pth")
    train_net("--config-file", config("panoptic"), "--eval-only", *FAST, *THRESHOLDS, "OUTPUT_DIR", evaluated,
              "MODEL.WEIGHTS", weights)  # fmt: skip
    assert {name: read(evaluated, name) for name in trained} == trained
    assert read(evaluated, "sem_seg_results.json") == read(out, "sem_seg_results.json")


def test_instance_config_evaluates_mask_ap_only(train_net, tmp_path):
    out = str(tmp_path / "run")
    proc = train_net("--config-file", config("instance"), *FAST, "OUTPUT_DIR", out)
    log = proc.stdout + proc.stderr
    assert "Evaluation on toy_instance_val (segm): AP=" in log and "mIoU=" not in log
    assert not os.path.exists(os.path.join(out, "inference", "sem_seg_results.json"))


def test_two_process_eval_only_equals_one_process(train_net, trained_once, tmp_path):
    """Issue 12's gathering to rank 0: with the same weights, two gloo processes (two images each) report exactly
    the mIoU, PQ and mask AP of one process (every result file, per class included). The shared run's matches make
    equal results evidence, not two empty sets."""
    run = trained_panoptic(trained_once)
    out = run.output_dir
    assert "1 of 2 images per global batch synthetic" in run.log
    files = ("sem_seg_results.json", "panoptic_results.json", "instance_results.json")
    single = {name: read(out, name) for name in files}  # the training run's final evaluation, in one process
    assert single["panoptic_results.json"]["PQ"] > 0 and single["sem_seg_results.json"]["mIoU"] > 0

    evaluated = str(tmp_path / "eval")
    proc = train_net("--config-file", config("panoptic"), "--eval-only", "--num-gpus", "2", *FAST, *THRESHOLDS,
                     "OUTPUT_DIR", evaluated, "MODEL.WEIGHTS", os.path.join(out, "model_final.pth"))  # fmt: skip
    log = proc.stdout + proc.stderr
    assert "Rank 0 of 2" in log and os.path.isfile(os.path.join(evaluated, "log.txt.rank1"))
    assert "Panoptic evaluation on 4 images" in log and "COCOeval (segm) on 4 images" in log
    assert {name: read(evaluated, name) for name in files} == single

