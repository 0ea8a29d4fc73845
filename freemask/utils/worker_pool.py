"""Worker processes that die with the process that started them.

Why: a pool's workers hold a queue of tasks; when their parent is killed (``kill -9``, the OOM killer, a closed
terminal), nothing tells them to stop: they finish every task already queued to them, writing outputs for a run that no
longer exists, then wait forever on a queue no one feeds. Linux has the exact tool: ``prctl(PR_SET_PDEATHSIG)``
sends the worker a signal when its parent exits (the kernel's, not Python's: it works while the worker is busy in C
code). Where the starter is not the worker's parent (a forkserver's children) or on other systems, a daemon thread of
the worker polls the starter instead. Standard library only.
"""

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Iterator, Optional, Tuple

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_POLL_S = 0.5


def die_with_parent(parent_pid: int) -> None:
    """In a child process: be killed (SIGKILL: nothing of the child's work outlives the run) when the process that
    started the work, ``parent_pid`` (``os.getpid()`` there), exits; at once if it is already gone.

    A direct child (the ``fork`` start method) gets the kernel's parent-death signal. A child of a ``forkserver``
    (``launch()``'s ranks, forked scripts) is not the starter's: the server outlives the starter as long as any of
    its children lives (each holds its "alive" pipe), so a daemon thread polls the starter instead."""
    if sys.platform.startswith("linux") and os.getppid() == parent_pid and _set_parent_death_signal(signal.SIGKILL):
        if os.getppid() != parent_pid:  # it died before the signal was set: re-parented already
            os._exit(1)
        return
    if not _running(parent_pid):
        os._exit(1)
    threading.Thread(target=_exit_when_gone, args=(parent_pid,), name="parent-watchdog", daemon=True).start()


def _set_parent_death_signal(signum: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0
    except (OSError, AttributeError):  # no prctl in this C library
        return False


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process: not gone, not another user's (its number reused), not a zombie (killed,
    waiting for its own parent to read its exit status)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):  # no /proc (not Linux): kill() said it exists
        return True


def _exit_when_gone(parent_pid: int) -> None:
    while _running(parent_pid):
        time.sleep(_POLL_S)
    os._exit(1)


def _start_worker(parent_pid: int, initializer: Optional[Callable[..., Any]], initargs: Tuple) -> None:
    die_with_parent(parent_pid)
    # Ctrl-C reaches every process of the terminal; the parent alone answers it (one line) and stops the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if initializer is not None:
        initializer(*initargs)


@contextlib.contextmanager
def process_pool(
    workers: int, initializer: Optional[Callable[..., Any]] = None, initargs: Tuple = ()
) -> Iterator[ProcessPoolExecutor]:
    """A ``ProcessPoolExecutor`` whose workers die with this process (:func:`die_with_parent`) and ignore Ctrl-C,
    then run ``initializer(*initargs)`` as the executor's own argument would.

    Leaving the block by an exception (Ctrl-C, a full disk, a bad file) stops the workers at once instead of
    letting them finish every queued task first, as the executor's own exit does: what they were writing is left
    as temporaries (atomic writes), which the next run removes."""
    pool = ProcessPoolExecutor(workers, initializer=_start_worker, initargs=(os.getpid(), initializer, initargs))
    try:
        yield pool
    except BaseException:
        # No public way to stop running workers before Python 3.14 (ProcessPoolExecutor.kill_workers); shutdown()
        # forgets them, so they are listed first.
        running = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in running:
            process.kill()
        raise
    pool.shutdown(wait=True)
