"""train_net.py trains and evaluates the toy Segmenter on CPU, and --eval-only reproduces the final evaluation."""

import json
import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, "configs", "toy", "semantic-segmentation", "segmenter_vit_tiny_toy.yaml")
FAST = ["SOLVER.IMS_PER_BATCH", "4", "SOLVER.MAX_ITER", "4", "SOLVER.CHECKPOINT_PERIOD", "100"]
FAST += ["SOLVER.WARMUP_ITERS", "1", "TEST.EVAL_PERIOD", "0", "LOG_PERIOD", "1", "DATALOADER.NUM_WORKERS", "1"]


def test_toy_segmenter_trains_and_evaluates_with_sliding_windows(train_net, tmp_path):
    out = str(tmp_path / "run")
    train_net("--config-file", CONFIG, "--num-gpus", "1", *FAST, "OUTPUT_DIR", out)
    with open(os.path.join(out, "metrics.json")) as f:
        metrics = [json.loads(line) for line in f]
    losses = [m["loss_sem_seg"] for m in metrics if "loss_sem_seg" in m]
    assert len(losses) == 4 and all(loss > 0 for loss in losses)
    with open(os.path.join(out, "inference", "sem_seg_results.json")) as f:
        trained = json.load(f)
    assert 0 <= trained["mIoU"] <= 100 and metrics[-1]["sem_seg/mIoU"] == trained["mIoU"]

    evaluated = str(tmp_path / "eval")
    weights = os.path.join(out, "model_final.pth")
    train_net("--config-file", CONFIG, "--eval-only", *FAST, "OUTPUT_DIR", evaluated, "MODEL.WEIGHTS", weights)
    with open(os.path.join(evaluated, "inference", "sem_seg_results.json")) as f:
        evaluated_results = json.load(f)
    assert evaluated_results.pop("produced_by")["weights"] == trained.pop("produced_by")["weights"]
    assert evaluated_results == trained
