"""The filter's output folder: masks, per-image records, statistics, and the settings the folder was made with.

Files (``<parent>`` is the folder holding ``output``)::

    <parent>/class_loss.json      pass 1 result (unless --class-loss names another file)
    <parent>/class_loss_histograms.json     pass 1's per-class loss histograms (beside the class-loss file)
    <parent>/heldout_loss_histograms.json   the same on the held-out real split, when one is given
    <parent>/filter_stats.json    fractions filtered per class and overall; the rule; the diagnostic
    <parent>/filter_stats_per_image.jsonl   with --per-image-stats only: one line per synthetic pair
    <output>/<mask name>.png      filtered masks, same names as the synthetic masks
    <output>/.filter_state.json   settings the masks were made with
    <output>/.filter_sizes.json   every synthetic image's size, so a re-run plans its batches without reading them
    <output>/.filter_records.rank<r>.jsonl   per-image pixel counts, for the statistics

Every file appears under its final name only once complete (:mod:`freemask.utils.atomic`), so "the mask exists"
means "the mask is finished" and a re-run skips it. A re-run must also produce what the interrupted run would have,
so ``.filter_state.json`` remembers the settings the masks were made with (model weights, rule, margin or clean
rate, boundary band, batch size, precision, inputs, held-out split, class losses and, for the quantile rule
calibrated on the training split, its histograms) and a re-run with other settings stops instead of mixing two
kinds of masks in one folder.

Each rank appends one JSON line per filtered mask to its own log, after the mask is in place. At the end rank 0 reads
every log line by line, adding each file's record to the totals once (:mod:`.stats`); a mask whose line was lost (a
kill between the mask's rename and the append, or a truncated last line) gets its record recomputed from the files
themselves: a filtered pixel is one whose stored value changed. Statistics are sums of integer pixel counts, so the
result does not depend on who computed a record, when, or in which order.

``filter_stats.json`` (UTF-8 JSON)::

    {"format": "freemask.filter_stats/1", "tolerance_margin": 1.25, "class_loss": "class_loss.json", "images": N,
     "overall": {"pixels": P, "filtered": F, "fraction": F / P},
     "classes": [{"id": 0, "name": "wall", "threshold": 0.26, "pixels": ..., "filtered": ..., "fraction": ...}]}

followed by ``"rule"``, ``"clean_rate"`` (null for mean-margin), ``"boundary_band"``, ``"diagnostic"`` (the
clean-data cost on real images, :meth:`.diagnostic.CleanCost.to_json`; null with --no-diagnostic) and, from
``tools/filter_syn.py``, ``"produced_by"``: the model's weights (path, sha256) and config.
``pixels`` counts labelled (non-ignored) pixels of the synthetic masks; ``threshold`` is null for a class that never
filters; ``tolerance_margin`` is null under the quantile rule; a fraction over zero pixels is 0. Its size does not
grow with the number of pairs; ``filter_stats_per_image.jsonl`` (--per-image-stats) holds what earlier versions kept
in its ``"per_image"`` list: ``{"file": "x_seed_42.png", "pixels": ..., "filtered": ..., "fraction": ...}`` per
line, sorted by file name.
"""

import collections
import glob
import json
import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Deque, Dict, Iterable, Iterator, Optional, Set

import cv2
import numpy as np

from ...data.datasets.synthetic import FILTERED_MASKS_DIR, MASKS_DIR
from ...data.errors import DatasetError
from ...data.mappers.semantic import read_mask
from ...errors import UserError
from ...evaluation.results_json import with_provenance
from ...utils.atomic import atomic_write_bytes, atomic_write_json
from ..sources import MaskSource, SourceSpec
from .batches import training_labels
from .rule import apply_filter
from .saved_sizes import SIZES_NAME

STATE_NAME = ".filter_state.json"
# What a folder written before a setting was recorded was made with: such a folder resumes only with these values.
IMPLIED_SETTINGS = {"rule": "mean-margin", "clean_rate": None, "boundary_band": 0, "heldout": None}
STATS_FORMAT = "freemask.filter_stats/1"
LOG_GLOB = ".filter_records.rank*.jsonl"


class OutputStateError(UserError, RuntimeError):
    """The output folder holds results of other settings; the message says which and how to proceed."""


# ------------------------------------------------------------------------------------------- where the output goes


def mask_file_name(record: dict) -> str:
    """Output name of a record's filtered mask: its mask's name, with a .png extension."""
    return os.path.splitext(os.path.basename(record["sem_seg_file_name"]))[0] + ".png"


def default_output(source: MaskSource) -> str:
    """``<root>/annotations_filtered`` for a synthetic dataset whose masks lie in ``<root>/annotations`` (where the
    ``*_syn_filtered_*`` splits read them); otherwise the user must say where."""
    folders = {os.path.dirname(os.path.abspath(r["sem_seg_file_name"])) for r in source.records}
    if len(folders) == 1:
        folder = folders.pop()
        if os.path.basename(folder) == MASKS_DIR:
            return os.path.join(os.path.dirname(folder), FILTERED_MASKS_DIR)
    raise DatasetError(
        f"cannot choose an output folder for {source.description} (its masks are not in one '{MASKS_DIR}' folder of "
        f"a synthetic root); pass --output DIR"
    )


def check_output_is_not_input(output: str, syn: MaskSource, *reals: Optional[SourceSpec]) -> None:
    """DatasetError when ``output`` is a folder holding synthetic images or masks, or a real mask folder: inputs
    are never modified. (The real pairs are listed only when a pass over them runs, so only their named folders are
    checked.)"""
    target = os.path.realpath(output)
    folders = {os.path.dirname(r[key]) for r in syn.records for key in ("sem_seg_file_name", "file_name")}
    for folder in sorted(folders):
        if os.path.realpath(folder or ".") == target:
            raise DatasetError(
                f"--output {output} is an input folder of {syn.description}; inputs are never overwritten: "
                f"choose another folder"
            )
    for real in reals:
        if real is not None and real.image_dir and os.path.realpath(real.mask_dir) == target:
            raise DatasetError(f"--output {output} is a real mask folder; inputs are never overwritten")


# --------------------------------------------------------------------------------------- the folder's bookkeeping


def write_png(path: str, mask: np.ndarray) -> None:
    """Atomically write a single-channel uint8/uint16 label map as PNG (lossless, dtype kept)."""
    ok, encoded = cv2.imencode(".png", mask)
    if not ok:
        raise OSError(f"{path}: PNG encoding failed for a {mask.dtype} mask of shape {mask.shape}")
    atomic_write_bytes(path, encoded.tobytes())


def existing_files(folder: str, names: Iterable[str]) -> Set[str]:
    """The subset of ``names`` present in ``folder`` (one listing, not one stat per name)."""
    with os.scandir(folder) as entries:
        present = {e.name for e in entries if e.is_file()}
    return present.intersection(names)


def read_state(output: str) -> Optional[Dict]:
    path = os.path.join(output, STATE_NAME)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_state(output: str, state: Dict) -> None:
    atomic_write_json(os.path.join(output, STATE_NAME), state, sort_keys=True)


def check_state(output: str, previous: Optional[Dict], current: Dict) -> None:
    """OutputStateError when ``previous`` (the folder's state) disagrees with ``current`` on a shared key."""
    if not previous:
        return
    previous = {**IMPLIED_SETTINGS, **previous}
    differ = sorted(k for k in current if k in previous and previous[k] != current[k])
    if differ:
        shown = "; ".join(f"{k}: {previous[k]!r} -> {current[k]!r}" for k in differ)
        raise OutputStateError(
            f"{output} holds masks filtered with other settings ({shown}); pass --overwrite to redo them, or choose "
            f"another --output"
        )


def clear_output(output: str, names: Iterable[str]) -> None:
    """--overwrite: remove this run's earlier masks, records, state and saved image sizes (other files are left
    alone)."""
    for name in existing_files(output, names):
        os.remove(os.path.join(output, name))
    remove_logs(output)
    for bookkeeping in (STATE_NAME, SIZES_NAME):
        path = os.path.join(output, bookkeeping)
        if os.path.exists(path):
            os.remove(path)


# ---------------------------------------------------------------------------------------------- per-image records


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


def log_records(output: str) -> Iterator[dict]:
    """Every complete record of every rank's log, the last written first (logs in reverse name order, each read from
    its end), so that the first record met for a file is the one a front-to-back reading would keep last. Read
    line by line: memory does not grow with the logs. Unparsable lines are skipped."""
    for path in sorted(glob.glob(os.path.join(output, LOG_GLOB)), reverse=True):
        for line in _lines_from_the_end(path):
            try:
                record = json.loads(line)
            except ValueError:  # not JSON (a line cut by a kill), or not UTF-8
                continue
            if isinstance(record, dict) and isinstance(record.get("file"), str):
                yield record


def _lines_from_the_end(path: str, block: int = 1 << 20) -> Iterator[bytes]:
    """The lines of ``path`` (without their ``\n``), last first, reading ``block`` bytes at a time."""
    with open(path, "rb") as f:
        position = f.seek(0, os.SEEK_END)
        tail = b""
        while position > 0:
            step = min(block, position)
            position -= step
            f.seek(position)
            lines = (f.read(step) + tail).split(b"\n")
            tail = lines[0]
            yield from reversed(lines[1:])
        yield tail


def remove_logs(output: str) -> None:
    for path in glob.glob(os.path.join(output, LOG_GLOB)):
        os.remove(path)


# ------------------------------------------------------------------------------------------------- writing masks


class MaskWriter:
    """Encodes and saves filtered masks on threads; a record is logged only once its mask is in place, in
    submission order. At most ``max_pending`` masks wait, bounding memory when the disk is slower than the model."""

    def __init__(self, log: RecordLog, threads: int, max_pending: int, num_classes: int, ignore_label: int) -> None:
        self.log = log
        self.pool = ThreadPoolExecutor(max(threads, 1))
        self.pending: Deque[Future] = collections.deque()
        self.max_pending = max(max_pending, 1)
        self.num_classes = num_classes
        self.ignore_label = ignore_label

    def submit(self, path: str, raw: np.ndarray, noisy: np.ndarray, labels: np.ndarray, fill: int) -> None:
        """Queue ``raw`` (the mask as stored) with its ``noisy`` pixels set to ``fill`` for ``path``, and its record
        (``labels``: the mask's training labels)."""

        def task() -> dict:
            write_png(path, apply_filter(raw, noisy, fill))
            return image_record(os.path.basename(path), labels, noisy, self.num_classes, self.ignore_label)

        self.pending.append(self.pool.submit(task))
        while len(self.pending) > self.max_pending or (self.pending and self.pending[0].done()):
            self.log.append(self.pending.popleft().result())

    def close(self) -> None:
        try:
            while self.pending:
                self.log.append(self.pending.popleft().result())
        finally:
            self.pool.shutdown(wait=True)
            self.log.close()


# ------------------------------------------------------------------------------------------------- filter_stats.json


def write_stats(path: str, stats: dict) -> None:
    """Write ``filter_stats.json``, with ``produced_by`` (the filter model's weights and config) while the tool has
    a provenance active (``evaluation.results_json.results_produced_by``)."""
    atomic_write_json(path, with_provenance(stats))
