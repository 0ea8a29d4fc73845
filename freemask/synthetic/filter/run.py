"""One run of the FreeMask filter, top to bottom: output folder and settings check, pass 1 (class-wise mean losses
of the real pairs, or a given class-loss file), pass 2 (filtered synthetic masks), ``filter_stats.json``.

Resumable and identical for any number of ranks: every rank takes every ``world_size``-th planned batch, rank 0
decides what the ranks must agree on (whether pass 1 runs, which masks are done) and broadcasts it. Where the
release ran one image at a time in float32 with one loader worker and saved each mask before reading the next image,
this run batches same-sized images, runs under autocast on GPU, decodes with several loader workers and encodes and
saves masks on a thread pool while the model works on the next batch. The files are listed in :mod:`.outputs`.

Passes over real images ("real passes") share one loop and measure what the run needs: pass 1 over the training
split (class sums and loss histograms), a held-out split when given (its histograms, and the clean-data cost when the
thresholds are already known), and the exact diagnostic pass when nothing else could count it (:mod:`.diagnostic`).
"""

import logging
import os
from typing import AbstractSet, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from tqdm import tqdm

from ...checkpoint import load_trained_model
from ...commands import hint
from ...config import CfgNode
from ...data.errors import DatasetError
from ...utils import comm
from ...utils.atomic import remove_stale_temporaries
from ...utils.file_hash import file_sha256
from ..class_loss import ClassLoss, read_class_loss, write_class_loss
from ..loss_histograms import (
    BOUNDARY_RADIUS,
    LossHistograms,
    default_edges,
    read_loss_histograms,
    write_loss_histograms,
)
from ..sources import MaskSource, SourceSpec
from .batches import PairReader, image_sizes, make_loader, plan_batches
from .boundary import batch_near_boundary
from .diagnostic import CleanCost, CleanCostAccumulator, cost_from_histograms
from .loss import BatchLoss, ClassLossAccumulator, HistogramAccumulator
from .options import MEAN_MARGIN, FilterOptions
from .outputs import (
    MaskWriter,
    RecordLog,
    check_state,
    clear_output,
    existing_files,
    log_records,
    mask_file_name,
    read_state,
    record_from_files,
    write_state,
    write_stats,
)
from .rule import class_thresholds, filled_value, noisy_pixels, quantile_thresholds
from .saved_sizes import read_sizes, write_sizes
from .stats import StatsTotals, write_per_image
from .windowed import windowed_map

logger = logging.getLogger("freemask.filter")


def load_filter_model(cfg: CfgNode) -> torch.nn.Module:
    """The model of ``cfg`` with ``MODEL.WEIGHTS`` loaded strictly, in eval mode."""
    return load_trained_model(cfg, "no MODEL.WEIGHTS given; the filter needs a model trained on the real images")


class SyntheticFilter:
    """Filters ``syn`` into ``options.output`` with ``model`` (any model offering ``preprocess``, ``device`` and
    ``predict_log_probs``, as :class:`~freemask.modeling.meta_arch.base.SemanticSegmentor` does).

    ``real`` names the real pairs, listed only when a pass over them runs (None with ``options.class_loss``);
    ``heldout`` a held-out real split (its histograms calibrate the quantile rule and measure the diagnostic);
    ``class_names`` label the statistics; ``weights`` is the checkpoint whose digest the output's settings record.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        options: FilterOptions,
        syn: MaskSource,
        class_names: Sequence[str],
        real: Optional[SourceSpec] = None,
        weights: str = "",
        heldout: Optional[SourceSpec] = None,
    ) -> None:
        self.options = options
        self.syn = syn
        self.class_names = list(class_names)
        self.real = real
        self.heldout = heldout
        self.weights = weights
        self.batch_loss = BatchLoss(model, options.amp_dtype)
        self.names = [mask_file_name(r) for r in syn.records]

    def run(self) -> Optional[Dict]:
        """The whole run; the statistics written to ``filter_stats.json`` on rank 0 (None on the other ranks)."""
        options = self.options
        previous = self._prepare_output()
        settings = comm.broadcast(self._settings() if comm.is_main_process() else None)
        check_state(options.output, previous, settings)

        stats, training = self._class_loss(resumable=previous is not None)
        settings["class_loss_sha256"] = file_sha256(options.class_loss_path)
        if options.rule != MEAN_MARGIN and self.heldout is None:
            settings["histograms_sha256"] = file_sha256(options.histograms_path)
        check_state(options.output, previous, settings)
        comm.synchronize()  # every rank has checked the state before rank 0 replaces it
        if comm.is_main_process():
            write_state(options.output, settings)

        margin_thresholds = class_thresholds(stats.mean_loss, options.tolerance_margin)
        heldout, cost = self._heldout_pass(margin_thresholds if options.rule == MEAN_MARGIN else None)
        calibration = heldout or training
        if options.rule == MEAN_MARGIN:
            thresholds = margin_thresholds
        else:
            thresholds = quantile_thresholds(calibration.per_class(), calibration.upper_edges(), options.clean_rate)
        if cost is None:
            cost = self._clean_cost(thresholds, calibration)
        done = comm.broadcast(existing_files(options.output, self.names) if comm.is_main_process() else None)
        logger.info(
            "Pass 2: %d synthetic images (%d already filtered), %s, output %s",
            len(self.names),
            len(done),
            self._rule_description(),
            options.output,
        )
        self.filter_pass(thresholds, done)
        comm.synchronize()
        return self._write_stats(stats, thresholds, cost) if comm.is_main_process() else None

    def _rule_description(self) -> str:
        options = self.options
        if options.rule == MEAN_MARGIN:
            text = f"rule {options.rule}, margin {options.tolerance_margin:.3g}"
        else:
            text = f"rule {options.rule}, clean rate {options.clean_rate:.3g}"
        return text + (f", boundary band {options.boundary_band} px" if options.boundary_band else "")

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
                for path in (self.options.stats_path, self.options.per_image_stats_path):
                    if os.path.exists(path):
                        os.remove(path)
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
            "rule": options.rule,
            "tolerance_margin": options.tolerance_margin,
            "clean_rate": options.clean_rate,
            "boundary_band": options.boundary_band,
            "batch_size": options.batch_size,
            "precision": options.precision,
            "synthetic": self.syn.description,
            "class_loss_source": os.path.abspath(options.class_loss) if options.class_loss else real,
            "heldout": self.heldout.description if self.heldout is not None else None,
        }

    def _class_loss(self, resumable: bool) -> Tuple[ClassLoss, Optional[LossHistograms]]:
        """The given class-loss file, the one a previous run of these settings wrote, or pass 1; with the training
        split's histograms (None when a given class-loss file has none beside it and no rule needs them)."""
        options = self.options
        path = options.class_loss_path
        reuse = options.class_loss or (resumable and os.path.exists(path))
        if comm.broadcast(bool(reuse) if comm.is_main_process() else None):  # every rank must take the same branch
            logger.info("Class-wise mean losses from %s (pass 1 skipped)", path)
            stats = read_class_loss(path, len(self.class_names))
            needed = options.rule != MEAN_MARGIN and self.heldout is None
            if not needed and not os.path.exists(options.histograms_path):
                return stats, None
            fix = (
                f"it is written with class_loss.json by pass 1 of {hint('filter')}: re-run without --class-loss "
                "(or with --overwrite), or calibrate on a held-out split (--real-val-dataset)"
            )
            return stats, read_loss_histograms(options.histograms_path, len(self.class_names), fix)
        if self.real is None:
            raise ValueError("pass 1 needs the real pairs: give `real` or `options.class_loss`")
        stats, histograms = self.class_loss_pass(self.real.pairs())
        if comm.is_main_process():  # histograms first: class_loss.json present means pass 1 finished
            write_loss_histograms(options.histograms_path, histograms)
            write_class_loss(path, stats)
            logger.info("Class-wise mean losses and loss histograms written to %s", os.path.dirname(path))
        comm.synchronize()
        return stats, histograms

    def class_loss_pass(self, real: MaskSource) -> Tuple[ClassLoss, LossHistograms]:
        """Pass 1: class-wise mean losses and loss histograms over ``real``."""
        stats, histograms, _ = self.real_pass(real, "pass 1: real images", sums=True)
        return stats, histograms

    def _heldout_pass(self, thresholds: Optional[torch.Tensor]) -> Tuple[Optional[LossHistograms], Optional[CleanCost]]:
        """Histograms of the held-out split (recomputed every run: the split is small and the result the same), and
        its clean-data cost under ``thresholds`` when they are known before its histograms are."""
        if self.heldout is None:
            return None, None
        source = self.heldout.pairs()
        counter = self._cost_counter(thresholds) if thresholds is not None and self.options.diagnostic else None
        _, histograms, counter = self.real_pass(source, "held-out real images", cost=counter)
        if comm.is_main_process():
            write_loss_histograms(self.options.heldout_histograms_path, histograms)
        comm.synchronize()
        cost = counter.result("held-out", source.description) if counter is not None else None
        return histograms, cost

    def _clean_cost(self, thresholds: torch.Tensor, histograms: Optional[LossHistograms]) -> Optional[CleanCost]:
        """The diagnostic: from the histograms of the diagnostic split when they count it exactly, else a pass over
        that split; None (and a line saying why) when skipped."""
        options = self.options
        split = "held-out" if self.heldout is not None else "training"
        if not options.diagnostic:
            logger.info("Clean-data diagnostic skipped (--no-diagnostic)")
            return None
        cost = None
        if histograms is not None:
            cost = cost_from_histograms(histograms, thresholds.numpy(), options.boundary_band, split)
        if cost is None:
            spec = self.heldout or self.real
            if spec is None:
                logger.info(
                    "Clean-data diagnostic skipped: no real images given (pass --real-dataset or --real-val-dataset)"
                )
                return None
            source = spec.pairs()
            desc = f"diagnostic: {split} images"
            _, _, counter = self.real_pass(source, desc, self._cost_counter(thresholds), histograms=False)
            cost = counter.result(split, source.description)
        logger.info("Diagnostic: %s", cost.line())
        return cost

    def _cost_counter(self, thresholds: torch.Tensor) -> CleanCostAccumulator:
        device = self.batch_loss.device
        return CleanCostAccumulator(thresholds, self.options.boundary_band, BOUNDARY_RADIUS, device)

    def real_pass(
        self,
        real: MaskSource,
        desc: str,
        cost: Optional[CleanCostAccumulator] = None,
        sums: bool = False,
        histograms: bool = True,
    ) -> Tuple[Optional[ClassLoss], Optional[LossHistograms], Optional[CleanCostAccumulator]]:
        """One forward over ``real`` (every rank its share of the batches; integer counts reduced over ranks):
        class-wise loss sums when ``sums`` (pass 1), loss histograms when ``histograms``, clean-data counts into
        ``cost`` when given (reduced in place)."""
        batches = plan_batches(image_sizes([r["file_name"] for r in real.records]), self.options.batch_size)
        logger.info("%s: %d real images in %d batches (%s)", desc, len(real.records), len(batches), real.description)
        num_classes, ignore = len(self.class_names), real.ignore_label
        reader = PairReader(real.records, num_classes, ignore, keep_raw=False)
        mine = batches[comm.get_rank() :: comm.get_world_size()]
        device = self.batch_loss.device
        class_sums = ClassLossAccumulator(num_classes, device) if sums else None
        counts = HistogramAccumulator(num_classes, default_edges(), device) if histograms else None
        bar = self._progress(sum(len(b) for b in mine), desc)
        for items in self._items(reader, mine, bar):
            loss, labels = self.batch_loss(items, ignore)
            sizes = [tuple(x["labels"].shape) for x in items]
            near = batch_near_boundary(labels, sizes, BOUNDARY_RADIUS)
            if class_sums is not None:
                class_sums.add(loss, labels, ignore)
            if counts is not None:
                counts.add(loss, labels, near, ignore)
            if cost is not None:
                cost.add(loss, labels, near, sizes, ignore)
        if bar is not None:
            bar.close()
        for accumulator in (class_sums, counts, cost):
            if accumulator is not None:
                accumulator.all_reduce()
        stats = class_sums.to_class_loss(real.description, self.class_names, ignore) if class_sums else None
        found = counts.to_histograms(real.description, self.class_names, ignore, BOUNDARY_RADIUS) if counts else None
        return stats, found, cost

    def filter_pass(self, thresholds: torch.Tensor, done: AbstractSet[str] = frozenset()) -> int:
        """Pass 2: write the filtered mask of every synthetic pair of this rank's share of the batches whose output
        name is not in ``done``, and log its record. Batches whose files are all done are skipped; a partly done
        batch is recomputed whole, so every file is computed with the same batch companions as in an uninterrupted
        run. Returns the number of masks written by this rank."""
        syn, output, names = self.syn, self.options.output, self.names
        batches = plan_batches(self._synthetic_sizes(), self.options.batch_size)
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
                keep = None
                if self.options.boundary_band:
                    sizes = [tuple(x["labels"].shape) for x in items]
                    keep = batch_near_boundary(labels, sizes, self.options.boundary_band)
                noisy = noisy_pixels(loss, labels, thresholds, syn.ignore_label, keep).cpu().numpy()
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

    def _synthetic_sizes(self) -> List[Tuple[int, int]]:
        """Every synthetic image's (H, W): saved in the output folder by an earlier run over the same image list, else
        read from the headers (every rank a share) and saved there."""
        output, paths = self.options.output, [r["file_name"] for r in self.syn.records]
        saved = comm.broadcast(read_sizes(output, paths) if comm.is_main_process() else None)
        if saved is not None:
            logger.info("Image sizes of the %d synthetic images read from %s", len(saved), output)
            return saved
        sizes = image_sizes(paths)
        if comm.is_main_process():
            write_sizes(output, paths, sizes)
        return sizes

    def _write_stats(self, stats: ClassLoss, thresholds: torch.Tensor, cost: Optional[CleanCost]) -> Dict:
        """``filter_stats.json`` (and with --per-image-stats its per-image file) from every rank's records, read line
        by line, recomputing from the files those a kill lost."""
        options, syn = self.options, self.syn
        totals = StatsTotals(self.names, len(thresholds), options.per_image_stats)
        totals.add_all(log_records(options.output))
        missing = totals.missing()
        if missing:
            logger.info("Recomputing %d per-image records from the written masks", len(missing))

        def recompute(index: int) -> dict:
            record, name = syn.records[index], self.names[index]
            reduce_zero = record.get("reduce_zero_label", False)
            filtered = os.path.join(options.output, name)
            args = (name, record["sem_seg_file_name"], filtered, reduce_zero, len(thresholds), syn.ignore_label)
            return record_from_files(*args)

        totals.add_all(windowed_map(recompute, missing, options.writer_threads))
        margin = options.tolerance_margin if options.rule == MEAN_MARGIN else None
        result = totals.summary(stats.names, thresholds.tolist(), margin, options.class_loss_path, options.parent)
        result.update(
            rule=options.rule,
            clean_rate=options.clean_rate,
            boundary_band=options.boundary_band,
            diagnostic=cost.to_json(stats.names) if cost is not None else None,
        )
        if totals.per_image is not None:
            write_per_image(options.per_image_stats_path, totals.per_image)
        elif os.path.exists(options.per_image_stats_path):  # an earlier run's, which this run did not update
            os.remove(options.per_image_stats_path)
            logger.info("Removed %s of an earlier run (--per-image-stats writes it)", options.per_image_stats_path)
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
        for items in make_loader(reader, batches, self.options.num_workers, pin, self.options.start_method):
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
