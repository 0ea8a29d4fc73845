"""The whole filter run behind ``tools/filter_syn.py``: settings check, pass 1 (or a given class-loss file), pass 2,
``filter_stats.json``; resumable and identical for any number of ranks.

Files (``<parent>`` is the folder holding ``output``)::

    <parent>/class_loss.json      pass 1 result (unless --class-loss names another file)
    <parent>/filter_stats.json    fractions filtered per class, overall and per image
    <output>/<mask name>.png      filtered masks, same names as the synthetic masks
    <output>/.filter_state.json   settings the masks were made with
    <output>/.filter_records.rank<r>.jsonl   per-image pixel counts, for the statistics
"""

import logging
import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch

from ..config import CfgNode
from ..data.errors import DatasetError
from ..utils import comm
from .class_loss import ClassLoss, read_class_loss, write_class_loss
from .filter_data import image_sizes, mask_file_name, plan_batches
from .filter_engine import BatchLoss, compute_class_loss, filter_masks
from .filter_inputs import MaskSource
from .filter_output import (
    check_state,
    existing_files,
    file_sha256,
    read_state,
    remove_stale_temporaries,
    write_state,
)
from .filter_records import build_stats, complete_records, read_logs, record_from_files, remove_logs, write_stats
from .filtering import class_thresholds

logger = logging.getLogger("freemask.filter")


@dataclass(frozen=True)
class FilterOptions:
    """What the user chose on the command line (see tools/filter_syn.py for each flag)."""

    output: str
    tolerance_margin: float = 1.25
    batch_size: int = 8
    num_workers: int = 4
    amp_dtype: Optional[torch.dtype] = None
    class_loss: Optional[str] = None
    overwrite: bool = False
    progress: bool = True
    writer_threads: int = 4

    @property
    def parent(self) -> str:
        return os.path.dirname(os.path.abspath(self.output))

    @property
    def class_loss_path(self) -> str:
        return self.class_loss or os.path.join(self.parent, "class_loss.json")

    @property
    def stats_path(self) -> str:
        return os.path.join(self.parent, "filter_stats.json")


def _settings(cfg: CfgNode, options: FilterOptions, syn: MaskSource, real_description: Optional[str]) -> Dict:
    return {
        "weights_sha256": file_sha256(cfg.MODEL.WEIGHTS),
        "tolerance_margin": options.tolerance_margin,
        "batch_size": options.batch_size,
        "precision": str(options.amp_dtype or torch.float32).replace("torch.", ""),
        "synthetic": syn.description,
        "class_loss_source": os.path.abspath(options.class_loss) if options.class_loss else real_description,
    }


def _broadcast(value):
    """Rank 0's ``value`` on every rank."""
    return comm.all_gather(value)[0]


def _clear_output(output: str, names: List[str]) -> None:
    """--overwrite: remove this run's earlier masks, records and state (other files are left alone)."""
    for name in existing_files(output, names):
        os.remove(os.path.join(output, name))
    remove_logs(output)
    state = os.path.join(output, ".filter_state.json")
    if os.path.exists(state):
        os.remove(state)


def _class_loss(
    options: FilterOptions,
    real_fn: Callable[[], MaskSource],
    batch_loss: BatchLoss,
    class_names: List[str],
    resumable: bool,
) -> ClassLoss:
    """The given class-loss file, the one a previous run of these settings wrote, or pass 1."""
    num_classes = len(class_names)
    reuse = options.class_loss or (resumable and os.path.exists(options.class_loss_path))
    if _broadcast(bool(reuse) if comm.is_main_process() else None):  # every rank must take the same branch
        logger.info("Class-wise mean losses from %s (pass 1 skipped)", options.class_loss_path)
        return read_class_loss(options.class_loss_path, num_classes)
    real = real_fn()
    batches = plan_batches(image_sizes([r["file_name"] for r in real.records]), options.batch_size)
    logger.info("Pass 1: class-wise mean loss over %d real images in %d batches", len(real.records), len(batches))
    stats = compute_class_loss(batch_loss, real, class_names, batches, options.num_workers, options.progress)
    if comm.is_main_process():
        write_class_loss(options.class_loss_path, stats)
        logger.info("Class-wise mean losses written to %s", options.class_loss_path)
    comm.synchronize()
    return stats


def run_filter(
    cfg: CfgNode,
    model: torch.nn.Module,
    options: FilterOptions,
    syn: MaskSource,
    real_fn: Optional[Callable[[], MaskSource]],
    real_description: Optional[str],
    class_names: List[str],
) -> Optional[Dict]:
    """Filter ``syn`` into ``options.output``; returns the statistics written to ``filter_stats.json`` on rank 0
    (None on the other ranks).

    ``real_fn`` lists the real pairs, called only when pass 1 runs; ``real_description`` names them beforehand.
    """
    output = options.output
    names = [mask_file_name(r) for r in syn.records]
    if len(set(names)) != len(names):
        raise DatasetError(f"synthetic masks of {syn.description} share file names; the output needs unique names")
    if comm.is_main_process():
        os.makedirs(output, exist_ok=True)
        if options.overwrite:
            _clear_output(output, names)
            if os.path.exists(options.stats_path):
                os.remove(options.stats_path)
        stale = remove_stale_temporaries(output)
        if stale:
            logger.info("Removed %d temporary files left by an interrupted run in %s", stale, output)
    comm.synchronize()
    settings = _broadcast(_settings(cfg, options, syn, real_description) if comm.is_main_process() else None)
    previous = _broadcast(read_state(output) if comm.is_main_process() else None)
    check_state(output, previous, settings)
    resumable = previous is not None

    batch_loss = BatchLoss(model, options.amp_dtype, bgr=cfg.INPUT.FORMAT == "BGR")
    stats = _class_loss(options, real_fn, batch_loss, class_names, resumable)
    digest = file_sha256(options.class_loss_path)
    settings["class_loss_sha256"] = digest
    check_state(output, previous, settings)
    comm.synchronize()  # every rank has checked the state before rank 0 replaces it
    if comm.is_main_process():
        write_state(output, settings)

    thresholds = class_thresholds(stats.mean_loss, options.tolerance_margin)
    done = _broadcast(existing_files(output, names) if comm.is_main_process() else None)
    batches = plan_batches(image_sizes([r["file_name"] for r in syn.records]), options.batch_size)
    logger.info(
        "Pass 2: %d synthetic images (%d already filtered), margin %.3g, output %s",
        len(names),
        len(done),
        options.tolerance_margin,
        output,
    )
    filter_masks(
        batch_loss,
        syn,
        thresholds,
        output,
        batches,
        done,
        options.num_workers,
        options.writer_threads,
        options.progress,
    )
    comm.synchronize()
    return _write_stats(options, syn, names, stats, thresholds) if comm.is_main_process() else None


def _write_stats(
    options: FilterOptions, syn: MaskSource, names: List[str], stats: ClassLoss, thresholds: torch.Tensor
) -> Dict:
    known = read_logs(options.output)
    missing = [i for i, n in enumerate(names) if n not in known]
    if missing:
        logger.info("Recomputing %d per-image records from the written masks", len(missing))
    tasks = [
        _recompute(syn.records[i], os.path.join(options.output, names[i]), len(thresholds), syn.ignore_label)
        for i in missing
    ]
    records = complete_records(names, known, tasks, options.writer_threads)
    result = build_stats(
        records, stats.names, thresholds.tolist(), options.tolerance_margin, options.class_loss_path, options.parent
    )
    write_stats(options.stats_path, result)
    overall = result["overall"]
    logger.info(
        "Filtered %.2f%% of %d labelled synthetic pixels; statistics in %s",
        100 * overall["fraction"],
        overall["pixels"],
        options.stats_path,
    )
    return result


def _recompute(record: Dict, filtered_path: str, num_classes: int, ignore_label: int) -> Callable[[], Dict]:
    def run() -> Dict:
        return record_from_files(
            os.path.basename(filtered_path),
            record["sem_seg_file_name"],
            filtered_path,
            record.get("reduce_zero_label", False),
            num_classes,
            ignore_label,
        )

    return run
