import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def train_net(toy_datasets):
    """Run train_net.py in a subprocess (the user's command), returning the completed process."""

    def run(*args, check=True, launcher=(), env=None):
        env = {**os.environ, "DETECTRON2_DATASETS": toy_datasets, "OMP_NUM_THREADS": "1", **(env or {})}
        proc = subprocess.run(
            [sys.executable, *launcher, os.path.join(REPO, "train_net.py"), *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            timeout=600,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"train_net.py failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            )
        return proc

    return run
