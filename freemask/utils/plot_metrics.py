"""Loss, learning-rate and mIoU curves of one or more training runs, read from their ``metrics.json``.

A user comparing real-only against joint training wants the runs on one figure: one panel per quantity, one line
per run. ``metrics.json`` is the trainer's log (one JSON object per logged iteration, detectron2's format); a run
that was resumed appends to it from its checkpoint's iteration, so the lines after a step back in ``iteration``
replace the earlier ones from there on. matplotlib is an optional dependency (``pip install freemask[plot]``) and is
imported only when a figure is drawn.
"""

import itertools
import json
import os
from collections.abc import Sequence
from typing import Dict, List, Tuple

from .atomic import atomic_path

METRICS_FILE = "metrics.json"
# The three panels: the total loss, the learning rate of the first parameter group, every "<results>/mIoU" key (one
# per evaluated dataset / pass, e.g. sem_seg/mIoU and sem_seg_ms_flip/mIoU).
LOSS_KEY, LR_KEY, MIOU_SUFFIX = "total_loss", "lr", "mIoU"
TITLES = ("total loss", "learning rate", "mIoU")
# A run keeps one colour on every panel (matplotlib's cycle restarts on each panel, so a run drawn only on some
# panels would change colour); its several mIoU lines (single-scale, multi-scale + flip) differ by line style.
LINE_STYLES = ("-", "--", ":", "-.")

Series = Dict[str, List[Tuple[int, float]]]


class MetricsError(ValueError):
    """A run folder without a usable metrics.json, or matplotlib missing; the message is one line with the fix."""


def read_metrics(output_dir: str) -> Series:
    """``{key: [(iteration, value), ...]}`` of a run, iterations ascending, with a resumed run's repeated
    iterations taken from its latest segment. An incomplete last line (a run killed mid-write) is left out."""
    path = os.path.join(output_dir, METRICS_FILE)
    if not os.path.isfile(path):
        raise MetricsError(
            f"{output_dir}: no {METRICS_FILE}; pass a training OUTPUT_DIR (training writes it every LOG_PERIOD)"
        )
    with open(path, encoding="utf-8") as f:
        lines = [line for line in f.read().splitlines() if line.strip()]
    series: Series = {}
    previous = -1
    for number, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise MetricsError(f"{path}:{number}: not a JSON object; remove the line or re-run the training") from None
        iteration = int(entry.get("iteration", previous + 1))
        if iteration <= previous:  # resumed: the new segment recomputes these iterations
            for points in series.values():
                points[:] = [p for p in points if p[0] < iteration]
        previous = iteration
        for key, value in entry.items():
            if key != "iteration" and isinstance(value, (int, float)):
                series.setdefault(key, []).append((iteration, float(value)))
    if not series:
        raise MetricsError(f"{path} holds no metrics yet; wait for the first LOG_PERIOD iterations")
    return series


def _panel_keys(series: Series) -> List[List[str]]:
    """The metric keys drawn in each of the TITLES panels."""
    miou = sorted(k for k in series if k == MIOU_SUFFIX or k.endswith("/" + MIOU_SUFFIX))
    return [[LOSS_KEY], [LR_KEY], miou]


def run_color(index: int) -> str:
    """The colour of the ``index``-th run on every panel: matplotlib's default cycle ``C0``..``C9``."""
    return f"C{index % 10}"


def plot_runs(runs: Sequence[Tuple[str, Series]], output: str, dpi: int = 100) -> None:
    """Write a PNG with the loss, learning-rate and mIoU panels of ``runs`` (label, series) to ``output``,
    atomically (a hidden temporary file renamed into place)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise MetricsError("matplotlib is not installed: pip install 'freemask[plot]' (or pip install matplotlib)")
    figure = Figure(figsize=(15, 4.2), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(TITLES))
    for index, (label, series) in enumerate(runs):
        color = run_color(index)
        for ax, keys in zip(axes, _panel_keys(series)):
            for key, style in zip(keys, itertools.cycle(LINE_STYLES)):
                if key in series:
                    steps, values = zip(*series[key])
                    name = label if len(keys) == 1 else f"{label} {key.rsplit('/' + MIOU_SUFFIX, 1)[0]}"
                    marker = "o" if len(steps) < 20 else None
                    ax.plot(steps, values, color=color, linestyle=style, marker=marker, label=name)
    for ax, title in zip(axes, TITLES):
        ax.set_title(title)
        ax.set_xlabel("iteration")
        # Iterations are integers: no fractional ticks, also around the one point of a run evaluated once.
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize="small")
    axes[1].ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with atomic_path(output) as tmp:
        figure.savefig(tmp, format="png")
