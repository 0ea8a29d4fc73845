"""Start one training process per GPU, on one or several machines, or join a process group made by torchrun."""

import logging
import os
import signal
import socket
import threading
from datetime import timedelta
from types import FrameType
from typing import Any, Callable, Optional, Tuple

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ..errors import WORKER_INTERRUPTED_EXIT, ArgumentError, interrupted
from ..utils.forked_script import warm_forkserver
from ..utils.worker_pool import die_with_parent

logger = logging.getLogger(__name__)


def _find_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def launch(
    main_func: Callable[..., Any],
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: str = "auto",
    args: Tuple = (),
    timeout: timedelta = timedelta(minutes=30),
) -> None:
    """Run ``main_func(*args)`` in every process of the job.

    - Under ``torchrun`` (``RANK``/``WORLD_SIZE`` set), this process already is one worker: join the group.
    - With one process in total, call ``main_func`` directly (no process group).
    - Otherwise start ``num_gpus_per_machine`` workers here; worker ``i`` has global rank
      ``machine_rank * num_gpus_per_machine + i``. On CPU-only machines each "GPU" is a gloo process, which is how
      the multi-process code paths are tested without GPUs.

    Workers are forked from a server that has imported torch, torchvision and timm and nothing else (start method
    ``forkserver``; detectron2 spawns): a worker is as clean as a spawned one (no CUDA context, no thread pool, the
    script re-run as ``__mp_main__``), but the N workers do not each pay the ~8 s of CPU those imports take.
    """
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        _join_torchrun_group(timeout)
        main_func(*args)
        return
    world_size = num_machines * num_gpus_per_machine
    if world_size <= 1:
        main_func(*args)
        return
    # Checked here, in the launching process, where an ArgumentError is one line; a worker's would be a traceback.
    if torch.cuda.is_available() and num_gpus_per_machine > torch.cuda.device_count():
        raise ArgumentError(
            f"--num-gpus {num_gpus_per_machine} but only {torch.cuda.device_count()} GPUs are visible; pass at most "
            f"--num-gpus {torch.cuda.device_count()} or check CUDA_VISIBLE_DEVICES"
        )
    if dist_url == "auto":
        if num_machines != 1:
            raise ArgumentError("--dist-url auto only works on one machine; pass tcp://<host of rank 0>:<port>")
        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    if num_machines > 1 and dist_url.startswith("file://"):
        logger.warning("file:// init needs a file system shared by every machine")
    # Ctrl-C reaches every process of the terminal: the workers save a checkpoint and exit with one line (see
    # engine/interrupt.py); the parent only waits for them instead of dying with a traceback of its own.
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, _wait_for_workers) if main_thread else None
    warm_forkserver()
    try:
        mp.start_processes(
            _worker,
            nprocs=num_gpus_per_machine,
            args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, args, timeout, os.getpid()),
            daemon=False,
            start_method="forkserver",
        )
    except mp.ProcessExitedException as e:
        if e.exit_code == WORKER_INTERRUPTED_EXIT:  # Ctrl-C: the workers left the line to this process
            raise interrupted() from None
        # The worker already printed why it exited (sys.exit with a message); don't bury that under a traceback.
        raise SystemExit(e.exit_code) from None
    finally:
        if main_thread:
            signal.signal(signal.SIGINT, previous)


def _wait_for_workers(signum: int, frame: Optional[FrameType]) -> None:
    """SIGINT handler of the launching process (a Python function, not SIG_IGN, which a started server would
    inherit)."""


def _join_torchrun_group(timeout: timedelta) -> None:
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    if int(os.environ["WORLD_SIZE"]) > 1 and not dist.is_initialized():
        dist.init_process_group(_backend(), init_method="env://", timeout=timeout)


def _worker(
    local_rank: int,
    main_func: Callable[..., Any],
    world_size: int,
    num_gpus_per_machine: int,
    machine_rank: int,
    dist_url: str,
    args: Tuple,
    timeout: timedelta,
    launcher_pid: int,
) -> None:
    # A killed launcher (kill -9, OOM) takes its workers with it instead of leaving them training on their own.
    die_with_parent(launcher_pid)
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    os.environ["LOCAL_RANK"] = str(local_rank)
    global_rank = machine_rank * num_gpus_per_machine + local_rank
    dist.init_process_group(_backend(), init_method=dist_url, world_size=world_size, rank=global_rank, timeout=timeout)
    try:
        dist.barrier()
        main_func(*args)
    finally:
        dist.destroy_process_group()
