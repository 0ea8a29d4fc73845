"""comm.local_master_first: the local master runs the block before the other ranks, and an error there never leaves
them waiting (two gloo processes, started as launch() starts ranks)."""

import contextlib
import datetime
import json
import os
import socket
import time

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from freemask.data import build
from freemask.data.catalog import DatasetCatalog
from freemask.data.errors import DatasetError
from freemask.utils import comm


def _worker(rank: int, port: int, folder: str, master_fails: bool) -> None:
    os.environ["LOCAL_RANK"] = str(rank)  # as launch() sets it: both ranks on this machine
    # A short timeout: a rank left waiting in a barrier fails the test in seconds instead of hanging it.
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                            timeout=datetime.timedelta(seconds=30))  # fmt: skip
    try:
        error = None
        try:
            with comm.local_master_first():
                if rank == 0:
                    time.sleep(1.0)  # were rank 1 not waiting, it would log first
                with open(os.path.join(folder, "order.log"), "a") as f:
                    f.write(f"{rank}\n")
                if master_fails and rank == 0:
                    raise DatasetError("rank 0's folder is missing")
        except DatasetError as e:
            error = str(e)
        # A collective after the block: it pairs up only if both ranks entered the same number of barriers.
        after = comm.broadcast(f"from rank {rank}")
        with open(os.path.join(folder, f"rank{rank}.json"), "w") as f:
            json.dump({"error": error, "after": after}, f)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(tmp_path, master_fails: bool):
    mp.start_processes(_worker, args=(_free_port(), str(tmp_path), master_fails), nprocs=2, start_method="forkserver")
    with open(tmp_path / "order.log") as f:
        order = f.read().split()
    return order, [json.load(open(tmp_path / f"rank{r}.json")) for r in range(2)]


def test_local_master_runs_the_block_first(tmp_path):
    order, results = _run(tmp_path, master_fails=False)
    assert order == ["0", "1"]
    assert [r["after"] for r in results] == ["from rank 0", "from rank 0"]
    assert [r["error"] for r in results] == [None, None]


def test_an_error_on_the_local_master_releases_the_other_ranks(tmp_path):
    order, results = _run(tmp_path, master_fails=True)
    assert order == ["0", "1"]  # rank 1 still ran the block, after rank 0
    assert results[0]["error"] == "rank 0's folder is missing" and results[1]["error"] is None
    assert [r["after"] for r in results] == ["from rank 0", "from rank 0"]  # no rank left in a barrier


def test_one_process_runs_the_block_once():
    runs = []
    with comm.local_master_first():
        runs.append(1)
    assert runs == [1]
    with pytest.raises(ValueError), comm.local_master_first():
        raise ValueError("passes through")


def test_records_are_loaded_inside_local_master_first(monkeypatch):
    inside = []
    depth = [0]

    @contextlib.contextmanager
    def recording():
        depth[0] += 1
        yield
        depth[0] -= 1

    monkeypatch.setattr(comm, "local_master_first", recording)
    name = "test_local_master_first_records"
    DatasetCatalog.register(name, lambda: inside.append(depth[0]) or [{"file_name": "x"}])
    try:
        assert build._load_records([name], "DATASETS.TRAIN") == [[{"file_name": "x"}]]
    finally:
        DatasetCatalog.remove(name)
    assert inside == [1]
