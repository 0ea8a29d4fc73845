"""Per-image filtering records and ``filter_stats.json``, identical whether a run was resumed or split over ranks.

Each rank appends one JSON line per filtered mask to its own log in the output folder, after the mask is in place.
At the end rank 0 reads every log; a mask whose line was lost (a kill between the mask's rename and the append, or a
truncated last line) gets its record recomputed from the files themselves: a filtered pixel is one whose stored
value changed. Statistics are integer pixel counts summed in file-name order, so the result does not depend on who
computed a record, when, or in which order.

``filter_stats.json`` (UTF-8 JSON)::

    {"format": "freemask.filter_stats/1", "tolerance_margin": 1.25, "class_loss": "class_loss.json", "images": N,
     "overall": {"pixels": P, "filtered": F, "fraction": F / P},
     "classes": [{"id": 0, "name": "wall", "threshold": 0.26, "pixels": ..., "filtered": ..., "fraction": ...}],
     "per_image": [{"file": "x_seed_42.png", "pixels": ..., "filtered": ..., "fraction": ...}, ...]}

``pixels`` counts labelled (non-ignored) pixels of the synthetic masks; ``threshold`` is null for a class that never
filters; a fraction over zero pixels is 0.
"""

import glob
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Iterable, List, Sequence

import numpy as np

from ..data.mapper import read_mask
from .filter_data import training_labels
from .filter_output import atomic_write_bytes

FORMAT = "freemask.filter_stats/1"
LOG_GLOB = ".filter_records.rank*.jsonl"


def image_record(name: str, labels: np.ndarray, noisy: np.ndarray, num_classes: int, ignore_label: int) -> dict:
    """``{"file", "labelled": {class: pixels}, "filtered": {class: pixels}}`` (classes as strings, sparse)."""
    valid = labels != ignore_label
    labelled = np.bincount(labels[valid], minlength=num_classes)
    filtered = np.bincount(labels[noisy & valid], minlength=num_classes)
    return {
        "file": name,
        "labelled": {str(c): int(n) for c, n in enumerate(labelled) if n},
        "filtered": {str(c): int(n) for c, n in enumerate(filtered) if n},
    }


def record_from_files(
    name: str, raw_path: str, filtered_path: str, reduce_zero: bool, num_classes: int, ignore_label: int
) -> dict:
    """The record of an already written mask, from the input mask and the filtered one."""
    raw, out = read_mask(raw_path), read_mask(filtered_path)
    return image_record(name, training_labels(raw, reduce_zero, ignore_label), raw != out, num_classes, ignore_label)


class RecordLog:
    """Append-only JSON-lines log of one rank; each line is flushed to the OS at once, so a killed process loses at
    most the line it was writing."""

    def __init__(self, output: str, rank: int) -> None:
        self.path = os.path.join(output, f".filter_records.rank{rank}.jsonl")
        needs_newline = (
            os.path.exists(self.path) and os.path.getsize(self.path) > 0 and not _ends_with_newline(self.path)
        )
        self._file = open(self.path, "a", encoding="utf-8")
        if needs_newline:  # a previous run was killed mid-line; keep that fragment on a line of its own
            self._file.write("\n")

    def append(self, record: dict) -> None:
        self._file.write(json.dumps(record, sort_keys=True) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _ends_with_newline(path: str) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def read_logs(output: str) -> Dict[str, dict]:
    """Every complete record of every rank's log, by file name (unparsable lines are skipped)."""
    records: Dict[str, dict] = {}
    for path in sorted(glob.glob(os.path.join(output, LOG_GLOB))):
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    record = json.loads(line)
                    records[record["file"]] = record
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue
    return records


def remove_logs(output: str) -> None:
    for path in glob.glob(os.path.join(output, LOG_GLOB)):
        os.remove(path)


def complete_records(
    names: Sequence[str],
    known: Dict[str, dict],
    recompute: Iterable,
    threads: int = 8,
) -> List[dict]:
    """Records of ``names`` in order: from ``known`` when present, else from ``recompute`` (callables returning a
    record, one per missing name in the same order), run on ``threads`` threads."""
    missing = [n for n in names if n not in known]
    tasks = list(recompute)
    if len(tasks) != len(missing):
        raise ValueError(f"{len(tasks)} recompute tasks for {len(missing)} missing records")
    with ThreadPoolExecutor(max(threads, 1)) as pool:
        found = dict(zip(missing, pool.map(lambda task: task(), tasks)))
    return [known[n] if n in known else found[n] for n in names]


def _fraction(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def build_stats(
    records: Sequence[dict],
    class_names: Sequence[str],
    thresholds: Sequence[float],
    tolerance_margin: float,
    class_loss_path: str,
    stats_folder: str,
) -> dict:
    """The ``filter_stats.json`` content of ``records`` (sorted by file name here, so callers need not); the
    class-loss file is named relative to ``stats_folder`` so the statistics do not change when a dataset moves."""
    num_classes = len(class_names)
    labelled, filtered = np.zeros(num_classes, np.int64), np.zeros(num_classes, np.int64)
    per_image = []
    for record in sorted(records, key=lambda r: r["file"]):
        for key, totals in (("labelled", labelled), ("filtered", filtered)):
            for c, n in record[key].items():
                totals[int(c)] += n
        pixels, removed = sum(record["labelled"].values()), sum(record["filtered"].values())
        per_image.append(
            {"file": record["file"], "pixels": pixels, "filtered": removed, "fraction": _fraction(removed, pixels)}
        )
    classes = [
        {
            "id": c,
            "name": class_names[c],
            "threshold": None if math.isinf(thresholds[c]) else float(thresholds[c]),
            "pixels": int(labelled[c]),
            "filtered": int(filtered[c]),
            "fraction": _fraction(int(filtered[c]), int(labelled[c])),
        }
        for c in range(num_classes)
    ]
    total, removed = int(labelled.sum()), int(filtered.sum())
    return {
        "format": FORMAT,
        "tolerance_margin": tolerance_margin,
        "class_loss": os.path.relpath(os.path.abspath(class_loss_path), stats_folder),
        "images": len(per_image),
        "overall": {"pixels": total, "filtered": removed, "fraction": _fraction(removed, total)},
        "classes": classes,
        "per_image": per_image,
    }


def write_stats(path: str, stats: dict) -> None:
    atomic_write_bytes(path, (json.dumps(stats, indent=1) + "\n").encode("utf-8"))
