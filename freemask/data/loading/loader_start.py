"""How the DataLoader workers of every loader FreeMask builds (training, test, filter) are started.

``DATALOADER.START_METHOD`` "" picks :data:`DEFAULT_START_METHOD`; fork, forkserver or spawn force one. The choice
is made on purpose rather than left to the process: a rank started by ``train_net.py --num-gpus N`` is a forkserver
child, so multiprocessing's default inside it is forkserver, while a one-process run gets the platform's default
(fork on Linux up to Python 3.13, forkserver from 3.14).

Why fork by default on Linux (spawn elsewhere, where fork is unsafe or missing). Measured on a shared 2-core machine,
4 workers, records in a :class:`~.record_buffer.RecordBuffer` (figures in bench/RESULTS.md, issue 26):
a worker's private memory (USS) and its start no longer depend on the number of records (600 or 400k) under any
method, so the choice is between start-up cost and what a worker inherits:

- ``fork``: 0.1-0.5 s to the first batch, 9 MiB private per worker; the workers map the rank's pages, records
  included. A fork copies a process that holds threads (torch's intra-op pool, gloo/NCCL, tqdm) and maybe a CUDA
  context: the workers never touch CUDA, torch re-creates its thread pools in a forked child and logging
  re-initialises its locks at fork, which is why this is what PyTorch's DataLoader has always done on Linux up to
  Python 3.13 and what detectron2 and Mask2Former trainings run. Python 3.12+ flags the fork of a multi-threaded
  process with a DeprecationWarning (hidden unless warnings are turned on).
- ``forkserver``: workers forked from a server with torch, torchvision and timm imported
  (:func:`freemask.utils.forked_script.warm_forkserver`): nothing inherited, but each process (each rank) starts
  its own server, which imports torch again, and each worker imports the data modules again when it unpickles the
  dataset: 3.4-10 s to the first batch (1.7 s of it with the server already up), 28 MiB per worker. Python 3.14's
  default on Linux; set it when the rank runs threads that a fork must not copy mid-operation.
- ``spawn``: a new interpreter per worker: 3-25 s to the first batch, 292 MiB private per worker (torch imported in
  each).

Passing the context explicitly keeps this choice when the interpreter's default changes (3.14) and inside ranks
started by ``train_net.py --num-gpus N``, whose default start method is the launcher's forkserver.
"""

import logging
import multiprocessing
import sys
from multiprocessing.context import BaseContext
from typing import Optional

from ...errors import ConfigError
from ...utils.forked_script import warm_forkserver

__all__ = ["START_METHODS", "DEFAULT_START_METHOD", "check_start_method", "loader_context"]

logger = logging.getLogger(__name__)

START_METHODS = ("fork", "forkserver", "spawn")
DEFAULT_START_METHOD = "fork" if sys.platform.startswith("linux") else "spawn"
_WHY_DEFAULT = "the default: fastest start, the workers map this process's memory; DATALOADER.START_METHOD changes it"


def check_start_method(start_method: str, key: str = "DATALOADER.START_METHOD") -> str:
    """``start_method`` if it is "" or one of :data:`START_METHODS`, else a ConfigError naming ``key``."""
    if start_method and start_method not in START_METHODS:
        raise ConfigError(
            f"{key} is '{start_method}'; use one of {', '.join(START_METHODS)}, or \"\" for the default "
            f"({DEFAULT_START_METHOD})"
        )
    return start_method


def loader_context(start_method: str, num_workers: int, loader: str) -> Optional[BaseContext]:
    """The multiprocessing context for a DataLoader with ``num_workers`` workers (None without workers: the
    DataLoader rejects a context then), logged once with ``loader`` naming the loader and why this method."""
    check_start_method(start_method)
    if num_workers <= 0:
        return None
    method = start_method or DEFAULT_START_METHOD
    why = "DATALOADER.START_METHOD" if start_method else _WHY_DEFAULT
    logger.info("%s loader: %d workers started by %s (%s)", loader, num_workers, method, why)
    return warm_forkserver() if method == "forkserver" else multiprocessing.get_context(method)
