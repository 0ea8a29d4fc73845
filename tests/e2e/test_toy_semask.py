"""The user's commands on the toy SeMask-FPN config: train_net.py trains and evaluates it, then --eval-only with
TEST.AUG.EVAL_BOTH prints the single-scale and the multi-scale + flip mIoU, as SeMask's tables report them."""

import json
import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, "configs", "toy", "semantic-segmentation", "semask_swin_tiny_toy.yaml")
FAST = [
    "SOLVER.IMS_PER_BATCH", "4", "SOLVER.MAX_ITER", "4", "SOLVER.CHECKPOINT_PERIOD", "100", "SOLVER.WARMUP_ITERS", "1",
    "TEST.EVAL_PERIOD", "0", "LOG_PERIOD", "1", "DATALOADER.NUM_WORKERS", "1", "MODEL.DEVICE", "cpu",
]  # fmt: skip


def read_json(*parts):
    with open(os.path.join(*parts)) as f:
        return json.load(f)


def test_train_net_trains_then_eval_only_reports_single_and_multi_scale(train_net, tmp_path):
    out = str(tmp_path / "run")
    train_net("--config-file", CONFIG, *FAST, "OUTPUT_DIR", out)
    with open(os.path.join(out, "metrics.json")) as f:
        metrics = [json.loads(line) for line in f]
    trained = [m for m in metrics if "total_loss" in m]
    assert [m["iteration"] for m in trained] == list(range(4))
    assert all(m["loss_prior"] > 0 and m["loss_sem_seg"] > 0 for m in trained)  # both losses train
    assert 0.0 <= read_json(out, "inference", "sem_seg_results.json")["mIoU"] <= 100.0

    evaluated = str(tmp_path / "eval")
    weights = os.path.join(out, "model_final.pth")
    proc = train_net("--config-file", CONFIG, "--eval-only", *FAST, "MODEL.WEIGHTS", weights,
                     "TEST.AUG.EVAL_BOTH", "True", "OUTPUT_DIR", evaluated)  # fmt: skip
    single = read_json(evaluated, "inference", "sem_seg_results.json")
    aug = read_json(evaluated, "inference", "ms_flip", "sem_seg_results.json")
    assert f"(single scale): mIoU={single['mIoU']:.4g}" in proc.stdout
    assert f"(multi-scale + flip): mIoU={aug['mIoU']:.4g}" in proc.stdout
    assert single["mIoU"] == read_json(out, "inference", "sem_seg_results.json")["mIoU"]  # same weights, same pass
    assert single != aug  # six scales and flips really ran: the per-class numbers differ
