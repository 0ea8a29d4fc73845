"""Small torch.distributed helpers that are no-ops in a single process."""

import os
from typing import Any, List

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_local_rank() -> int:
    """Rank within this machine; launch() stores it in the environment of every worker."""
    return int(os.environ.get("LOCAL_RANK", 0))


def is_main_process() -> bool:
    return get_rank() == 0


def synchronize() -> None:
    """Barrier across all ranks (no-op in a single process)."""
    if get_world_size() > 1:
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` in place across ranks and return it."""
    if get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather(obj: Any) -> List[Any]:
    """Gather any picklable object from every rank, in rank order."""
    if get_world_size() == 1:
        return [obj]
    gathered: List[Any] = [None] * get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` (any picklable object) on every rank; what the other ranks pass is ignored.

    One ``broadcast_object_list``: the object is pickled once and sent from ``src``, rather than every rank's object
    being gathered everywhere to keep one of them.
    """
    if get_world_size() == 1:
        return obj
    holder = [obj if get_rank() == src else None]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def shared_seed(seed: int) -> int:
    """``seed`` if non-negative, else one drawn on rank 0 and shared with every rank.

    Every rank must derive the same global batches from the seed, so a seed drawn independently per rank would
    silently desynchronise the samplers.
    """
    if seed < 0:
        seed = int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
    return broadcast(seed)
