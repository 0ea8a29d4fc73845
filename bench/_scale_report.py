"""bench/data_scale.py's report: its runs combined per (tree, ranks, workers), the tables, the projection for one
8-GPU machine and issue 26's "Must show" checks, each a line saying PASS or FAIL with the figures compared."""

import statistics
from typing import Dict, List, Optional

from tabulate import tabulate

GB = 1e9


def combine_rounds(runs: List[Dict]) -> List[Dict]:
    """One row per (tree, ranks, workers) from its ``--repeat`` runs: the fastest start-up (the run least slowed by
    other jobs on the machine; every run's kept in ``startup_runs``), every process's USS pooled, the median job PSS
    and /dev/shm growth, the cache state of the first run."""
    rows: Dict[tuple, Dict] = {}
    for m in runs:
        key = (m["size"], m["ranks"], m["workers"])
        if key not in rows:
            rows[key] = {**m, "rank_uss": [], "worker_uss": [], "startup_runs": [], "pss_runs": [], "shm_runs": []}
        row = rows[key]
        row["rank_uss"] += m["rank_uss"]
        row["worker_uss"] += m["worker_uss"]
        row["startup_runs"].append(m["startup_s"])
        row["pss_runs"].append(m["total_pss"])
        row["shm_runs"].append(m["shm_added"])
    for row in rows.values():
        row["startup_s"] = min(row["startup_runs"])
        row["total_pss"] = statistics.median(row["pss_runs"])
        row["shm_added"] = statistics.median(row["shm_runs"])
    return list(rows.values())


def _gb(values: List[int]) -> Optional[float]:
    return statistics.mean(values) / GB if values else None


def _fmt(value: Optional[float], digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def mean_gb(values: List[int]) -> str:
    """The mean of byte counts in GB, as the tables print it ('-' for none)."""
    return _fmt(_gb(values))


def print_tables(train: List[Dict], filters: List[Dict]) -> None:
    rows = []
    for m in train:
        worker_max = max(m["worker_uss"]) / GB if m["worker_uss"] else None
        memory = [
            _fmt(_gb(m["rank_uss"])),
            _fmt(_gb(m["worker_uss"])),
            _fmt(worker_max),
            _fmt(m["total_pss"] / GB),
            _fmt(m["shm_added"] / GB),
        ]
        runs = "/".join(f"{t:.0f}" for t in m["startup_runs"])
        rows.append([m["size"], m["joint"], m["ranks"], m["workers"], m["cache"], *memory, m["startup_s"], runs])
    headers = ["tree", "joint records", "ranks", "workers", "cache", "rank USS GB", "worker USS GB (mean)",
               "worker USS GB (max)", "job PSS GB", "/dev/shm added GB", "start-up to 1st batch s (min)",
               "runs s"]  # fmt: skip
    if rows:
        print(tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True))
    if filters:
        print()
        rows = [[f["size"], f["joint"], f["workers"], f["cache"], f["start_s"], f["resume_s"]] for f in filters]
        headers = ["tree", "joint records", "filter workers", "cache", "filter start s", "resume s"]
        print(tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True))
    print_projection(train)


def print_projection(train: List[Dict]) -> None:
    """8 ranks x 4 and x 8 workers from the largest measured (ranks, workers>0) of each tree."""
    rows = []
    for size in dict.fromkeys(m["size"] for m in train):
        measured = [m for m in train if m["size"] == size and m["workers"] > 0 and m["worker_uss"]]
        if not measured:
            continue
        m = max(measured, key=lambda m: (m["ranks"], m["workers"]))
        rank, worker = _gb(m["rank_uss"]), _gb(m["worker_uss"])
        rows.append([size, m["joint"], f"{m['ranks']} x {m['workers']}", _fmt(8 * rank + 32 * worker, 1),
                     _fmt(8 * rank + 64 * worker, 1)])  # fmt: skip
    if rows:
        print("\nProjected host memory (8 x rank USS + 8 x workers x worker USS), GB:")
        print(tabulate(rows, headers=["tree", "joint records", "from ranks x workers", "8 x 4", "8 x 8"],
                       tablefmt="github", disable_numparse=True))  # fmt: skip


def must_show(train: List[Dict], filters: List[Dict]) -> List[str]:
    """Issue 26's checks on what was measured (a line each; 'not measured' where a row is missing)."""
    lines = []
    small = [m for m in train if m["joint"] < 1000 and (m["ranks"], m["workers"]) == (2, 4)]
    big = [m for m in train if m["joint"] >= 800_000 and (m["ranks"], m["workers"]) == (2, 4)]
    if small and big:
        s, b = small[0], big[0]
        dw, dr = _gb(b["worker_uss"]) - _gb(s["worker_uss"]), _gb(b["rank_uss"]) - _gb(s["rank_uss"])
        ratio = b["startup_s"] / s["startup_s"]
        joint = f"{b['joint']} vs {s['joint']} joint records, 2 ranks x 4 workers"
        lines.append(f"{'PASS' if dw <= 0.1 else 'FAIL'}: worker USS +{dw:.2f} GB ({joint}; wanted <= 0.1)")
        lines.append(f"{'PASS' if dr <= 0.2 else 'FAIL'}: rank USS +{dr:.2f} GB ({joint}; wanted <= 0.2)")
        lines.append(f"{'PASS' if ratio <= 1.5 else 'FAIL'}: start-up {ratio:.2f}x ({joint}; wanted <= 1.5x)")
    else:
        lines.append("not measured: the 828k / 600-record checks need both at 2 ranks x 4 workers")
    resume = [f for f in filters if 390_000 <= f["synthetic"] <= 410_000]
    if resume:
        r = resume[0]["resume_s"]
        lines.append(f"{'PASS' if r < 20 else 'FAIL'}: filter resume at 400k pairs reaches its first mask in {r:.1f} s "
                     "(wanted < 20)")  # fmt: skip
    else:
        lines.append("not measured: filter resume at 400k pairs")
    return lines
