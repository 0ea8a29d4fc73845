"""The user's command on the toy SegFormer config: train_net.py trains MiT-B0 + all-MLP decoder and evaluates it."""

import json
import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, "configs", "toy", "semantic-segmentation", "segformer_mit_b0_toy.yaml")
FAST = [
    "SOLVER.IMS_PER_BATCH", "4", "SOLVER.MAX_ITER", "4", "SOLVER.CHECKPOINT_PERIOD", "100", "SOLVER.WARMUP_ITERS", "1",
    "TEST.EVAL_PERIOD", "0", "LOG_PERIOD", "1", "DATALOADER.NUM_WORKERS", "1", "MODEL.SEGFORMER.DECODER_DIM", "32",
]  # fmt: skip


def test_train_net_trains_and_evaluates_the_toy_segformer(train_net, tmp_path):
    out = str(tmp_path / "run")
    proc = train_net("--config-file", CONFIG, "--num-gpus", "1", *FAST, "OUTPUT_DIR", out)
    assert {"config.yaml", "metrics.json", "model_final.pth"} <= set(os.listdir(out))
    with open(os.path.join(out, "metrics.json")) as f:
        metrics = [json.loads(line) for line in f]
    assert [m["iteration"] for m in metrics if "total_loss" in m] == list(range(4))
    with open(os.path.join(out, "inference", "sem_seg_results.json")) as f:
        results = json.load(f)
    assert 0.0 <= results["mIoU"] <= 100.0 and metrics[-1]["sem_seg/mIoU"] == results["mIoU"]
    assert f"mIoU={results['mIoU']:.4g}" in proc.stdout
