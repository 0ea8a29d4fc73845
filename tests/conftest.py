import atexit
import contextlib
import fcntl
import logging
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
from typing import Callable, Iterator

import pytest
import torch

from freemask.utils.forked_script import warm_forkserver

REPO = pathlib.Path(__file__).resolve().parents[1]


def pytest_configure(config):
    """Under pytest-xdist, each worker takes its share of the cores for in-process torch work: N workers each
    running torch on every core oversubscribe the machine (subprocess tests already run with OMP_NUM_THREADS=1).

    Processes the tests start through multiprocessing's ``forkserver`` (tool commands, two-rank workers) come from
    one server per worker with torch and timm imported, as ``launch()``'s workers do (utils/forked_script.py).

    Listing caches (freemask/data/loading/listing_cache.py) go to a folder of this run, removed at exit, never to the
    user's ``~/.cache/freemask``; set before the server starts so that every process the tests start inherits it.

    The Ctrl-C tests send SIGINT as a terminal does. A suite started as a background job of a script (``cmd &`` in a
    non-interactive shell) inherits SIGINT ignored, and so would every command the tests start: handle it as a run
    from a terminal does."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    cache = tempfile.mkdtemp(prefix="freemask-test-cache-")
    atexit.register(shutil.rmtree, cache, ignore_errors=True)
    os.environ["FREEMASK_CACHE_DIR"] = cache
    warm_forkserver()
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def pytest_collection_modifyitems(items):
    """End-to-end tests (tests/e2e/: whole train_net / tool runs, tens of seconds each) first, the rest in their
    order. With ``--dist worksteal`` (the README's command) each worker starts on a contiguous share of this order
    and an idle one takes the tail of another's queue, so the long tests start at once and the short ones fill the
    end; a long test collected late would run alone at the end while the other workers idle. (``--dist load`` sends
    consecutive chunks of a quarter of a worker's share: every e2e test went to one worker, which ran on alone.)"""
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


@contextlib.contextmanager
def _file_lock(path: pathlib.Path) -> Iterator[None]:
    """Exclusive ``flock`` on ``path`` (made if absent), released when the block ends or the process dies."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def made_once(tmp_path_factory) -> Callable[[str, Callable[[pathlib.Path], None]], pathlib.Path]:
    """``made_once(name, make)``: the folder ``make(folder)`` fills, made once for the whole run and shared.

    A session fixture runs once per pytest-xdist worker; the folder lives in the directory all workers of this run
    share (the parent of each worker's base temp; the base temp itself without xdist), and a file lock makes the
    first worker that asks build it while the others wait and reuse it. A ``.done`` marker is written last, so a
    folder left half-made by a failed ``make`` is made again. Tests must treat it as read-only (copy it to change it).
    """
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    shared = root / "made_once"
    shared.mkdir(exist_ok=True)

    def get(name: str, make: Callable[[pathlib.Path], None]) -> pathlib.Path:
        folder, done = shared / name, shared / f"{name}.done"
        with _file_lock(shared / f"{name}.lock"):
            if not done.exists():
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir()
                make(folder)
                done.touch()
        return folder

    return get


@pytest.fixture(scope="session")
def toy_datasets(made_once) -> str:
    """A small toy dataset (the README's generator, shrunk) made once for every test that trains or evaluates."""

    def make(root: pathlib.Path) -> None:
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

    return str(made_once("datasets", make))
