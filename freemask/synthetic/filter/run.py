"""One run of the FreeMask filter, top to bottom: output folder and settings check, pass 1 (class-wise mean losses
of the real pairs, or a given class-loss file), pass 2 (filtered synthetic masks), ``filter_stats.json``.

Resumable and identical for any number of ranks: every rank takes every ``world_size``-th planned batch, rank 0
decides what the ranks must agree on (whether pass 1 runs, which masks are done) and broadcasts it. Where the
release ran one image at a time in float32 with one loader worker and saved each mask before reading the next image,
this run batches same-sized images, runs under autocast on GPU, decodes with several loader workers and encodes and
saves masks on a thread pool while the model works on the next batch. The files are listed in :mod:`.outputs`.
"""

import logging
import os
from typing import AbstractSet, Dict, Iterator, List, Optional, Sequence

import torch
from tqdm import tqdm

from ...checkpoint import load_trained_model
from ...config import CfgNode
from ...data.errors import DatasetError
from ...utils import comm
from ...utils.atomic import remove_stale_temporaries
from ...utils.file_hash import file_sha256
from ..class_loss import ClassLoss, read_class_loss, write_class_loss
from ..sources import MaskSource, SourceSpec
from .batches import PairReader, image_sizes, make_loader, plan_batches
from .loss import BatchLoss, ClassLossAccumulator
from .options import FilterOptions
from .outputs import (
    MaskWriter,
    RecordLog,
    build_stats,
    check_state,
    clear_output,
    complete_records,
    existing_files,
    mask_file_name,
    read_logs,
    read_state,
    record_from_files,
    write_state,
    write_stats,
)
from .rule import class_thresholds, filled_value, noisy_pixels

logger = logging.getLogger("freemask.filter")


def load_filter_model(cfg: CfgNode) -> torch.nn.Module:
    """The model of ``cfg`` with ``MODEL.WEIGHTS`` loaded strictly, in eval mode."""
    return load_trained_model(cfg, "no MODEL.WEIGHTS given; the filter needs a model trained on the real images")


class SyntheticFilter:
    """Filters ``syn`` into ``options.output`` with ``model`` (any model offering ``preprocess``, ``device`` and
    ``predict_log_probs``, as :class:`~freemask.modeling.meta_arch.base.SemanticSegmentor` does).

    ``real`` names the real pairs, listed only when pass 1 runs (None with ``options.class_loss``); ``class_names``
    label the statistics; ``weights`` is the checkpoint whose digest the output's settings record.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        options: FilterOptions,
        syn: MaskSource,
        class_names: Sequence[str],
        real: Optional[SourceSpec] = None,
        weights: str = "",
    ) -> None:
        self.options = options
        self.syn = syn
        self.class_names = list(class_names)
        self.real = real
        self.weights = weights
        self.batch_loss = BatchLoss(model, options.amp_dtype)
        self.names = [mask_file_name(r) for r in syn.records]

    def run(self) -> Optional[Dict]:
        """The whole run; the statistics written to ``filter_stats.json`` on rank 0 (None on the other ranks)."""
        previous = self._prepare_output()
        settings = comm.broadcast(self._settings() if comm.is_main_process() else None)
        check_state(self.options.output, previous, settings)

        stats = self._class_loss(resumable=previous is not None)
        settings["class_loss_sha256"] = file_sha256(self.options.class_loss_path)
        check_state(self.options.output, previous, settings)
        comm.synchronize()  # every rank has checked the state before rank 0 replaces it
        if comm.is_main_process():
            write_state(self.options.output, settings)

        thresholds = class_thresholds(stats.mean_loss, self.options.tolerance_margin)
        done = comm.broadcast(existing_files(self.options.output, self.names) if comm.is_main_process() else None)
        logger.info(
            "Pass 2: %d synthetic images (%d already filtered), margin %.3g, output %s",
            len(self.names),
            len(done),
            self.options.tolerance_margin,
            self.options.output,
        )
        self.filter_pass(thresholds, done)
        comm.synchronize()
        return self._write_stats(stats, thresholds) if comm.is_main_process() else None

    def _prepare_output(self) -> Optional[Dict]:
        """Create the output folder (emptied of this run's files with --overwrite, of dead runs' temporaries always);
        the settings an earlier run recorded there, on every rank."""
        output = self.options.output
        if len(set(self.names)) != len(self.names):
            raise DatasetError(
                f"synthetic masks of {self.syn.description} share file names; the output needs unique names"
            )
        if comm.is_main_process():
            os.makedirs(output, exist_ok=True)
            if self.options.overwrite:
                clear_output(output, self.names)
                if os.path.exists(self.options.stats_path):
                    os.remove(self.options.stats_path)
            stale = remove_stale_temporaries(output)
            if stale:
                logger.info("Removed %d temporary files left by an interrupted run in %s", stale, output)
        comm.synchronize()
        return comm.broadcast(read_state(output) if comm.is_main_process() else None)

    def _settings(self) -> Dict:
        """What the masks depend on; a re-run into the same folder must match it."""
        options = self.options
        real = self.real.description if self.real is not None else None
        return {
            "weights_sha256": file_sha256(self.weights),
            "tolerance_margin": options.tolerance_margin,
            "batch_size": options.batch_size,
            "precision": options.precision,
            "synthetic": self.syn.description,
            "class_loss_source": os.path.abspath(options.class_loss) if options.class_loss else real,
        }

    def _class_loss(self, resumable: bool) -> ClassLoss:
        """The given class-loss file, the one a previous run of these settings wrote, or pass 1."""
        path = self.options.class_loss_path
        reuse = self.options.class_loss or (resumable and os.path.exists(path))
        if comm.broadcast(bool(reuse) if comm.is_main_process() else None):  # every rank must take the same branch
            logger.info("Class-wise mean losses from %s (pass 1 skipped)", path)
            return read_class_loss(path, len(self.class_names))
        if self.real is None:
            raise ValueError("pass 1 needs the real pairs: give `real` or `options.class_loss`")
        stats = self.class_loss_pass(self.real.pairs())
        if comm.is_main_process():
            write_class_loss(path, stats)
            logger.info("Class-wise mean losses written to %s", path)
        comm.synchronize()
        return stats

    def class_loss_pass(self, real: MaskSource) -> ClassLoss:
        """Pass 1: class-wise mean loss over ``real`` (every rank runs its share of the batches; sums are reduced)."""
        batches = plan_batches(image_sizes([r["file_name"] for r in real.records]), self.options.batch_size)
        logger.info("Pass 1: class-wise mean loss over %d real images in %d batches", len(real.records), len(batches))
        num_classes = len(self.class_names)
        reader = PairReader(real.records, num_classes, real.ignore_label, keep_raw=False)
        mine = batches[comm.get_rank() :: comm.get_world_size()]
        accumulator = ClassLossAccumulator(num_classes, self.batch_loss.device)
        bar = self._progress(sum(len(b) for b in mine), "pass 1: real images")
        for items in self._items(reader, mine, bar):
            loss, labels = self.batch_loss(items, real.ignore_label)
            accumulator.add(loss, labels, real.ignore_label)
        if bar is not None:
            bar.close()
        accumulator.all_reduce()
        return accumulator.to_class_loss(real.description, self.class_names, real.ignore_label)

    def filter_pass(self, thresholds: torch.Tensor, done: AbstractSet[str] = frozenset()) -> int:
        """Pass 2: write the filtered mask of every synthetic pair of this rank's share of the batches whose output
        name is not in ``done``, and log its record. Batches whose files are all done are skipped; a partly done
        batch is recomputed whole, so every file is computed with the same batch companions as in an uninterrupted
        run. Returns the number of masks written by this rank."""
        syn, output, names = self.syn, self.options.output, self.names
        batches = plan_batches(image_sizes([r["file_name"] for r in syn.records]), self.options.batch_size)
        todo = [b for b in batches if any(names[i] not in done for i in b)]
        mine = todo[comm.get_rank() :: comm.get_world_size()]
        reader = PairReader(syn.records, len(thresholds), syn.ignore_label, keep_raw=True)
        log = RecordLog(output, comm.get_rank())
        max_pending = 4 * max((len(b) for b in batches), default=1)
        writer = MaskWriter(log, self.options.writer_threads, max_pending, len(thresholds), syn.ignore_label)
        bar = self._progress(sum(len(b) for b in mine), "pass 2: synthetic images")
        written = 0
        try:
            for items in self._items(reader, mine, bar):
                loss, labels = self.batch_loss(items, syn.ignore_label)
                noisy = noisy_pixels(loss, labels, thresholds, syn.ignore_label).cpu().numpy()
                for row, item in enumerate(items):
                    name = names[item["index"]]
                    if name in done:
                        continue
                    h, w = item["raw"].shape
                    fill = filled_value(syn.records[item["index"]].get("reduce_zero_label", False), syn.ignore_label)
                    path = os.path.join(output, name)
                    writer.submit(path, item["raw"], noisy[row, :h, :w], item["labels"].numpy(), fill)
                    written += 1
        finally:
            writer.close()
            if bar is not None:
                bar.close()
        return written

    def _write_stats(self, stats: ClassLoss, thresholds: torch.Tensor) -> Dict:
        """``filter_stats.json`` from every rank's records, recomputing from the files those a kill lost."""
        options, syn = self.options, self.syn
        known = read_logs(options.output)
        missing = [i for i, n in enumerate(self.names) if n not in known]
        if missing:
            logger.info("Recomputing %d per-image records from the written masks", len(missing))

        def recompute(index: int):
            record, name = syn.records[index], self.names[index]
            reduce_zero = record.get("reduce_zero_label", False)
            filtered = os.path.join(options.output, name)
            args = (name, record["sem_seg_file_name"], filtered, reduce_zero, len(thresholds), syn.ignore_label)
            return lambda: record_from_files(*args)

        records = complete_records(self.names, known, [recompute(i) for i in missing], options.writer_threads)
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

    def _items(self, reader: PairReader, batches: List[List[int]], progress: Optional[tqdm]) -> Iterator[List[Dict]]:
        """This rank's ``batches`` of items in order, a bad pair turned into its one-line DatasetError."""
        pin = self.batch_loss.device.type == "cuda"
        for items in make_loader(reader, batches, self.options.num_workers, pin_memory=pin):
            for item in items:
                if "error" in item:
                    raise DatasetError(item["error"])
            yield items
            if progress is not None:
                progress.update(len(items))

    def _progress(self, total: int, desc: str) -> Optional[tqdm]:
        if not (self.options.progress and comm.is_main_process()):
            return None
        world = comm.get_world_size()
        label = f"{desc} (rank 0 of {world})" if world > 1 else desc
        return tqdm(total=total, desc=label, unit="img", dynamic_ncols=True, smoothing=0.05)
