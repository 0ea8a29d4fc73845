import os
import pathlib
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence

import pytest
from script_runner import run_script

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_train_net(
    datasets: str, *args: str, check: bool = True, launcher: Sequence[str] = (), env: Optional[Dict[str, str]] = None
) -> subprocess.CompletedProcess:
    """train_net.py as the user's command on ``datasets`` (forked from the test's script server unless a
    ``launcher`` such as torchrun comes first); fails the test on a non-zero exit if ``check``."""
    env = {**os.environ, "DETECTRON2_DATASETS": datasets, "OMP_NUM_THREADS": "1", **(env or {})}
    command = [*launcher, os.path.join(REPO, "train_net.py"), *args]
    if launcher:
        command = [sys.executable, *command]
        proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    else:
        proc = run_script(command, env=env, cwd=REPO, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"train_net.py failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture
def train_net(toy_datasets):
    """Run train_net.py as the user's command, returning the completed process."""

    def run(*args, check=True, launcher=(), env=None):
        return run_train_net(toy_datasets, *args, check=check, launcher=launcher, env=env)

    return run


@dataclass(frozen=True)
class TrainedRun:
    """A train_net.py run shared by several tests: its OUTPUT_DIR (read-only: copy it to change it) and its log."""

    output_dir: str
    log: str  # stdout + stderr of the training command


@pytest.fixture(scope="session")
def trained_once(made_once, toy_datasets) -> Callable[..., TrainedRun]:
    """``trained_once(name, *args)``: ``train_net.py *args OUTPUT_DIR <shared folder>`` on the toy datasets, run once
    for the whole test run (all xdist workers) however many tests ask for the same ``name``.

    Tests that only read a trained model (--eval-only, resume from a copy, filter input) share one training instead
    of each paying for its own; every caller of a name must pass the same arguments (checked).
    """

    def train(name: str, *args: str) -> TrainedRun:
        def make(folder: pathlib.Path) -> None:
            out = folder / "run"
            proc = run_train_net(toy_datasets, *args, "OUTPUT_DIR", str(out))
            (folder / "args.txt").write_text("\n".join(args))
            (folder / "train_net.log").write_text(proc.stdout + proc.stderr)

        folder = made_once(f"trained_{name}", make)
        assert (folder / "args.txt").read_text() == "\n".join(args), f"trained_once({name!r}) with other arguments"
        return TrainedRun(str(folder / "run"), (folder / "train_net.log").read_text())

    return train
