import logging
import os
import pathlib
import subprocess
import sys

import pytest
import torch

REPO = pathlib.Path(__file__).resolve().parents[1]


def pytest_configure(config):
    """Under pytest-xdist, each worker takes its share of the cores for in-process torch work: N workers each
    running torch on every core oversubscribe the machine (subprocess tests already run with OMP_NUM_THREADS=1)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def pytest_collection_modifyitems(items):
    """End-to-end tests (tests/e2e/: whole train_net / tool runs, tens of seconds each) first, the rest in their
    order: pytest-xdist hands tests out in collection order, so a long test collected late would run alone at the
    end while the other workers idle. Longest first keeps the workers busy to the end."""
    items.sort(key=lambda item: 0 if f"{os.sep}e2e{os.sep}" in str(item.fspath) else 1)


@pytest.fixture(autouse=True)
def freemask_logs_reach_caplog():
    """Let ``caplog`` see the ``freemask`` loggers in every test.

    ``setup_logger()`` (called in-process by train_net/filter_syn/demo tests) stops propagation to the root logger, as
    detectron2 does, so that console lines are not printed twice. caplog listens on the root logger, so without this a
    log assertion would pass or fail depending on which tests ran before it.
    """
    logger = logging.getLogger("freemask")
    before = logger.propagate
    logger.propagate = True
    yield
    logger.propagate = before


@pytest.fixture
def repo_root() -> pathlib.Path:
    return REPO


@pytest.fixture(scope="session")
def toy_datasets(tmp_path_factory) -> str:
    """A small toy dataset (the README's generator, shrunk) made once for every test that trains or evaluates."""
    root = tmp_path_factory.mktemp("datasets")
    subprocess.run(
        [
            sys.executable,
            str(REPO / "tools" / "make_toy_dataset.py"),
            "--root",
            str(root),
            "--num-train",
            "8",
            "--num-val",
            "4",
            "--seeds",
            "2",
            "--size",
            "64x64",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return str(root)
