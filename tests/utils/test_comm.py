"""comm.broadcast and comm.shared_seed in one process and across two gloo processes."""

import json
import socket

import torch.distributed as dist
import torch.multiprocessing as mp

from freemask.utils import comm


def test_one_process_returns_the_object_and_the_seed():
    obj = {"a": [1, 2]}
    assert comm.broadcast(obj) is obj
    assert comm.shared_seed(7) == 7
    assert 0 <= comm.shared_seed(-1) < 2**31


def _refuse_gather(*args, **kwargs):
    raise AssertionError("broadcast must not all-gather")


def _worker(rank: int, port: int, result_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        dist.all_gather_object = _refuse_gather  # this process only: a broadcast that gathers fails here
        results = {
            "from_0": comm.broadcast({"rank": rank, "names": [f"r{rank}"]}),
            "from_1": comm.broadcast(f"sent by {rank}", src=1),
            "none_elsewhere": comm.broadcast(("rank 0's",) if rank == 0 else None),
            "fixed_seed": comm.shared_seed(5),
            "drawn_seed": comm.shared_seed(-1),
        }
        with open(f"{result_file}.rank{rank}", "w") as f:
            json.dump(results, f)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_get_the_source_rank_object_and_one_seed(tmp_path):
    result_file = str(tmp_path / "result")
    args = (_free_port(), result_file)
    mp.start_processes(_worker, args=args, nprocs=2, start_method="forkserver")  # as launch() does
    ranks = [json.load(open(f"{result_file}.rank{r}")) for r in range(2)]
    for result in ranks:
        assert result["from_0"] == {"rank": 0, "names": ["r0"]}
        assert result["from_1"] == "sent by 1"
        assert result["none_elsewhere"] == ["rank 0's"]
        assert result["fixed_seed"] == 5
    assert ranks[0]["drawn_seed"] == ranks[1]["drawn_seed"]
