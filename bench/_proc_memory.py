"""Private memory (USS) of a process and its loader workers, read from /proc (Linux; no psutil).

USS = ``Private_Clean + Private_Dirty`` of ``/proc/<pid>/smaps_rollup``: the pages only this process maps, which is
what each extra rank or loader worker adds to the machine. RSS would count the shared pages (torch's libraries, a
buffer the workers share) once per process and hide exactly the copies issue 26 is about. USS has the opposite
blind spot: pages a forked worker still shares with its parent are private to neither, so the job's PSS total
(:func:`job_memory`) is read beside it.
"""

import os
from typing import Dict, List, Optional


def smaps_rollup(pid: int) -> Optional[Dict[str, int]]:
    """The ``kB`` fields of ``/proc/<pid>/smaps_rollup`` in bytes; None when the process is gone or unreadable."""
    fields: Dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[2] == "kB":
                    fields[parts[0].rstrip(":")] = int(parts[1]) * 1024
    except (OSError, ValueError):
        return None
    return fields or None


def uss_bytes(pid: int) -> Optional[int]:
    """USS of ``pid`` in bytes; None when the process is gone or /proc cannot be read."""
    fields = smaps_rollup(pid)
    if fields is None or "Private_Clean" not in fields or "Private_Dirty" not in fields:
        return None
    return fields["Private_Clean"] + fields["Private_Dirty"]


def pss_bytes(pid: int) -> Optional[int]:
    """PSS of ``pid`` in bytes (each shared page split between the processes mapping it)."""
    fields = smaps_rollup(pid)
    return None if fields is None else fields.get("Pss")


def children(pid: int) -> List[int]:
    """Direct child processes of ``pid`` (every thread's children)."""
    found: List[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return sorted(set(found))


def descendants(pid: int) -> List[int]:
    """Every process below ``pid``, depth first."""
    found: List[int] = []
    for child in children(pid):
        found.append(child)
        found.extend(descendants(child))
    return found


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def loader_workers(rank_pid: int) -> List[int]:
    """The loader workers of a training process: its descendants that have no child process and are not
    multiprocessing's resource tracker.

    Workers are children of the rank under ``fork`` and grandchildren (through the rank's own server) under
    ``forkserver``; a forked worker carries its server's command line, so a server is told apart by having children
    (the workers), not by its name."""
    return [
        pid
        for pid in descendants(rank_pid)
        if not children(pid) and "resource_tracker" not in cmdline(pid) and "semaphore_tracker" not in cmdline(pid)
    ]


def job_memory(launcher_pid: int, rank_pids: List[int]) -> Dict[str, List[int]]:
    """In bytes: ``rank`` (USS of each rank), ``worker`` (USS of each loader worker of every rank) and ``pss``
    (PSS of the launcher and every process below it, servers and trackers included: their sum is the job's share
    of host memory, shared pages counted once). Processes that vanished while being read are left out."""
    ranks = [uss_bytes(pid) for pid in rank_pids]
    workers = [uss_bytes(w) for pid in rank_pids for w in loader_workers(pid)]
    pss = [pss_bytes(pid) for pid in [launcher_pid, *descendants(launcher_pid)]]
    return {
        key: [v for v in values if v is not None]
        for key, values in (("rank", ranks), ("worker", workers), ("pss", pss))
    }
