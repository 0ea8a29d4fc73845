import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOY_CONFIG = os.path.join(REPO, "configs", "toy", "semantic_fpn_R18_toy.yaml")
# A few iterations of the toy config, small enough for CI on two CPU cores.
FAST = [
    "SOLVER.IMS_PER_BATCH", "4", "SOLVER.MAX_ITER", "6", "SOLVER.CHECKPOINT_PERIOD", "3", "SOLVER.WARMUP_ITERS", "2",
    "TEST.EVAL_PERIOD", "0", "LOG_PERIOD", "1", "DATALOADER.NUM_WORKERS", "2",
    "MODEL.SEM_SEG_HEAD.CONVS_DIM", "32", "MODEL.SEM_SEG_HEAD.HEAD_DIM", "32",
]


@pytest.fixture
def train_net(toy_datasets):
    """Run train_net.py in a subprocess (the user's command), returning the completed process."""

    def run(*args, check=True, extra_env=None):
        env = {**os.environ, "DETECTRON2_DATASETS": toy_datasets, "OMP_NUM_THREADS": "1", **(extra_env or {})}
        proc = subprocess.run(
            [sys.executable, os.path.join(REPO, "train_net.py"), *args],
            capture_output=True, text=True, env=env, cwd=REPO, timeout=600,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"train_net.py failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc

    return run
