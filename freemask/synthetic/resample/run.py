"""One run of hardness-aware re-sampling, top to bottom: synthetic pairs without a real mask, hardness of every real
mask, the plan (copies and seeds), the chosen pairs copied or linked when asked, the manifest, a summary.

The same inputs, ``max_copies`` and ``seed`` give the same manifest on any machine.
"""

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from tqdm import tqdm

from ...data.datasets.synthetic import write_manifest
from ...data.errors import DatasetError
from ..class_loss import ClassLoss
from ..sources import RealMasks, SyntheticPairs, short_list
from .hardness import compute_hardness
from .outputs import chosen_pairs, manifest_path, materialise
from .plan import ResamplePlan, plan_resampling


@dataclass(frozen=True)
class ResampleOptions:
    """What the user chose on the command line (see tools/resample_syn.py for each flag)."""

    max_copies: int = 20
    seed: int = 0
    output: str | None = None  # the manifest; default: the one the *_syn_resampled_* splits read
    folder: str | None = None  # --copy / --symlink DIR
    symlink: bool = False
    allow_orphans: bool = False
    workers: int = 1
    progress: bool = True


class SyntheticResampler:
    """Re-samples ``synthetic`` by the hardness of ``real`` under ``class_loss``; ``report`` prints the summary
    lines (``print`` for the command line). The manifest path is checked on construction, before any long work."""

    def __init__(
        self,
        real: RealMasks,
        synthetic: SyntheticPairs,
        class_loss: ClassLoss,
        options: ResampleOptions,
        report: Callable[[str], None] = print,
    ) -> None:
        self.real = real
        self.synthetic = synthetic
        self.class_loss = class_loss
        self.options = options
        self.report = report
        self.manifest = manifest_path(options.output, options.folder, synthetic)

    def run(self) -> ResamplePlan:
        """Write the manifest (and the folders); the plan it was made from."""
        options = self.options
        synthetic = self._without_orphans()
        names = sorted(self.real.paths)
        start = time.perf_counter()
        with tqdm(total=len(names), desc="hardness", unit="mask", disable=not options.progress) as bar:
            hardness = compute_hardness(
                [self.real.paths[n] for n in names],
                self.class_loss.mean_loss_array(),
                self.real.ignore_label,
                self.real.reduce_zero_label,
                options.workers,
                bar.update,
            )
        seconds = time.perf_counter() - start
        plan = plan_resampling(dict(zip(names, hardness)), synthetic.seeds(), options.max_copies, options.seed)
        pairs = chosen_pairs(plan, synthetic)

        if options.folder:
            desc = "symlink" if options.symlink else "copy"
            with tqdm(total=2 * len(pairs), desc=desc, disable=not options.progress) as bar:
                placed = materialise(pairs, options.folder, options.symlink, options.workers, bar.update)
            pairs = placed.pairs
            self.report(
                f"{options.folder}: {placed.written} files written, {placed.skipped} already there"
                + (f", {placed.unlisted} files not in this selection left as they are" if placed.unlisted else "")
            )
        folder = os.path.dirname(os.path.abspath(self.manifest))
        os.makedirs(folder, exist_ok=True)
        write_manifest(self.manifest, pairs, folder)

        self.report(
            f"real masks: {len(names)} from {self.real.source}; hardness in {seconds:.1f} s ({options.workers} threads)"
        )
        self._summary(plan, synthetic)
        return plan

    def _without_orphans(self) -> SyntheticPairs:
        """The synthetic pairs, less those whose real mask is absent when --allow-orphans (else an error)."""
        synthetic = self.synthetic
        orphans = sorted(set(synthetic.pairs) - set(self.real.paths))
        if not orphans:
            return synthetic
        count = sum(len(synthetic.pairs[s]) for s in orphans)
        message = (
            f"{count} synthetic pairs of {len(orphans)} real stems ({short_list(orphans)}) in {synthetic.source} "
            f"have no real mask in {self.real.source}"
        )
        if not self.options.allow_orphans:
            raise DatasetError(
                f"{message}; pass the real masks they were made from, or --allow-orphans to leave them out"
            )
        self.report(f"left out: {message} (--allow-orphans)")
        return synthetic.without(orphans)

    def _summary(self, plan: ResamplePlan, synthetic: SyntheticPairs) -> None:
        report = self.report
        report(f"synthetic pairs: {synthetic.num_pairs} of {len(synthetic.pairs)} real masks from {synthetic.source}")
        without, short = plan.without_seeds(), plan.short_of_seeds()
        histogram = plan.copies_histogram()
        report("copies per real mask (copies: masks): " + ", ".join(f"{k}: {n}" for k, n in histogram.items()))
        if without or short:
            wanted = plan.wanted_histogram()
            report("  asked by hardness rank (copies: masks): " + ", ".join(f"{k}: {n}" for k, n in wanted.items()))
        if without:
            report(f"missing seeds: {len(without)} real masks have no synthetic pair ({short_list(without)})")
        if short:
            lost = sum(int(k) - len(c) for k, c in zip(plan.wanted, plan.chosen) if 0 < len(c) < k)
            report(
                f"missing seeds: {len(short)} real masks have fewer seeds than their copies, all taken, {lost} pairs "
                f"short ({short_list(short)})"
            )
        report(
            f"total: {plan.total_pairs} pairs written to {self.manifest} "
            f"(seed {self.options.seed}, max copies {self.options.max_copies})"
        )
