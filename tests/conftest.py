import logging
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


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
