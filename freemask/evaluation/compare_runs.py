"""Per-class IoU of two semantic evaluations of the same test set: which classes a change of training gained or lost.

The question a FreeMask user asks after training real-only and joint models (the paper's table of its ten most
improved ADE20K classes: "ship +68.19, microwave +48.72, ..."). Both sides are ``sem_seg_results.json`` files as the
semantic evaluator writes them (``IoU-<class>``, ``mIoU``, ``pACC`` in percent, null where a class is undefined), or a
training output folder, meaning its ``inference/sem_seg_results.json``: the trainer rewrites that file at every
evaluation, so it holds the run's last one (its ``produced_by.iteration`` says which).

Two results compare only when they score the same classes of the same test set: a file written by this version names
its dataset and class list (``dataset``, see :data:`~freemask.evaluation.sem_seg.DATASET_KEY`); an older one is
known by its ``IoU-<class>`` keys and, when it has one, the single test set of the config under ``produced_by``.
Reading, comparing and the tables are standard-library code; the chart imports matplotlib (the optional ``plot``
extra) only when drawn.
"""

import csv
import io
import json
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..commands import hint
from ..errors import UserError
from ..utils.atomic import atomic_path
from .results_json import PRODUCED_BY
from .sem_seg import DATASET_KEY, INFERENCE_DIR, MULTI_SCALE_DIR, RESULTS_FILE

IOU_PREFIX = "IoU-"
OVERALL = ("mIoU", "pACC")


class CompareError(UserError, ValueError):
    """Results that cannot be compared (missing, unreadable, not semantic, other dataset or classes); one line."""


@dataclass(frozen=True)
class RunResults:
    """One side of the comparison, as read from its results file."""

    label: str
    path: str  # the results file read
    dataset: Optional[str]  # None when the file does not say (an older file)
    classes: Tuple[str, ...]  # in label order
    iou: Dict[str, Optional[float]]  # class -> IoU in percent, None where undefined
    overall: Dict[str, Optional[float]]  # mIoU, pACC
    iteration: Optional[int]  # the training iteration evaluated, None for --eval-only or an older file
    note: str = ""  # which file a folder stood for, when it had several

    def describe(self) -> str:
        """One line saying which evaluation this side is."""
        when = f"the evaluation at iteration {self.iteration}" if self.iteration is not None else "its evaluation"
        dataset = self.dataset or "test set not recorded"
        return f"{self.label}: {self.path} ({when}; {dataset}, {len(self.classes)} classes){self.note}"


@dataclass(frozen=True)
class ClassGain:
    """A class's IoU on both sides and the gain ``b - a`` (None when either side is undefined)."""

    name: str
    a: Optional[float]
    b: Optional[float]

    @property
    def gain(self) -> Optional[float]:
        return None if self.a is None or self.b is None else self.b - self.a


@dataclass(frozen=True)
class Comparison:
    """Run ``b`` against run ``a``: per-class gains and the overall metrics."""

    a: RunResults
    b: RunResults

    @property
    def classes(self) -> List[ClassGain]:
        """Every class, in A's label order."""
        return [ClassGain(name, self.a.iou[name], self.b.iou[name]) for name in self.a.classes]

    @property
    def overall(self) -> List[ClassGain]:
        """mIoU and pACC of both sides (named as in the results file)."""
        return [ClassGain(key, self.a.overall[key], self.b.overall[key]) for key in OVERALL]

    def improved(self, top: int) -> List[ClassGain]:
        """The ``top`` classes of largest positive gain, largest first (ties by name)."""
        gains = [c for c in self.classes if c.gain is not None and c.gain > 0]
        return sorted(gains, key=lambda c: (-c.gain, c.name))[:top]

    def degraded(self, top: int) -> List[ClassGain]:
        """The ``top`` classes of largest loss (most negative gain), largest loss first (ties by name)."""
        gains = [c for c in self.classes if c.gain is not None and c.gain < 0]
        return sorted(gains, key=lambda c: (c.gain, c.name))[:top]

    def undefined(self) -> List[str]:
        """Classes without a gain: no IoU on one side (no ground-truth pixel of the class in that evaluation)."""
        return [c.name for c in self.classes if c.gain is None]


def find_results_file(path: str) -> Tuple[str, str]:
    """``(results file, note)`` for a results file or a training output folder (its ``inference/`` results; the
    single-scale pass when the multi-scale one exists too). The note names the files not chosen."""
    if os.path.isfile(path):
        return path, ""
    if not os.path.isdir(path):
        raise CompareError(f"{path} does not exist; pass a training OUTPUT_DIR or its {INFERENCE_DIR}/{RESULTS_FILE}")
    for folder in (os.path.join(path, INFERENCE_DIR), path):  # OUTPUT_DIR, or its inference/ folder itself
        direct = os.path.join(folder, RESULTS_FILE)
        if os.path.isfile(direct):
            multi = os.path.join(folder, MULTI_SCALE_DIR, RESULTS_FILE)
            note = f" (single-scale; the multi-scale + flip pass is {multi})" if os.path.isfile(multi) else ""
            return direct, note
        per_dataset = sorted(
            os.path.join(folder, name, RESULTS_FILE)
            for name in (os.listdir(folder) if os.path.isdir(folder) else [])
            if name != MULTI_SCALE_DIR and os.path.isfile(os.path.join(folder, name, RESULTS_FILE))
        )
        if len(per_dataset) == 1:
            return per_dataset[0], ""
        if per_dataset:
            raise CompareError(
                f"{path} holds the results of {len(per_dataset)} test sets ({', '.join(per_dataset)}); pass one file"
            )
    raise CompareError(
        f"{path}: no {INFERENCE_DIR}/{RESULTS_FILE} (the run was never evaluated); evaluate it: {_evaluate(path)}"
    )


def read_results(path: str, label: Optional[str] = None) -> RunResults:
    """The semantic results ``path`` (a file or an output folder) stands for; ``label`` defaults to its run's name."""
    file, note = find_results_file(path)
    try:
        with open(file, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise CompareError(f"{file} cannot be read ({e.strerror or e}); check its permissions") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        reason = "empty" if os.path.getsize(file) == 0 else f"not valid JSON ({one_clause(e)})"
        raise CompareError(
            f"{file} is {reason}; evaluate the run again to rewrite it: {_evaluate(run_folder(file))}"
        ) from None
    if not isinstance(data, dict):
        raise CompareError(f"{file} is not a results object; pass a {RESULTS_FILE} written by the semantic evaluator")
    classes = _classes(data)
    if not classes or any(key not in data for key in OVERALL):
        raise CompareError(
            f"{file} has no per-class IoU (IoU-<class>, mIoU, pACC keys); pass a semantic-segmentation "
            f"{RESULTS_FILE} (panoptic / instance results have no per-class IoU)"
        )
    produced_by = data.get(PRODUCED_BY) if isinstance(data.get(PRODUCED_BY), dict) else {}
    return RunResults(
        label=label or run_name(file),
        path=file,
        dataset=_dataset(data, produced_by, file),
        classes=tuple(classes),
        iou={name: _number(data.get(IOU_PREFIX + name), file, IOU_PREFIX + name) for name in classes},
        overall={key: _number(data[key], file, key) for key in OVERALL},
        iteration=produced_by.get("iteration"),
        note=note,
    )


def compare(a: RunResults, b: RunResults) -> Comparison:
    """``b`` against ``a``; CompareError when they score different test sets or class lists."""
    if a.dataset and b.dataset and a.dataset != b.dataset:
        raise CompareError(
            f"{a.path} is an evaluation on {a.dataset}, {b.path} on {b.dataset}; compare runs evaluated on the same "
            "test set"
        )
    if set(a.classes) != set(b.classes):
        only_a = [c for c in a.classes if c not in set(b.classes)]
        only_b = [c for c in b.classes if c not in set(a.classes)]
        raise CompareError(
            f"{a.path} and {b.path} score different class lists ({len(a.classes)} and {len(b.classes)} classes; "
            f"only in {a.label}: {_few(only_a)}; only in {b.label}: {_few(only_b)}); compare runs evaluated on the "
            "same test set"
        )
    return Comparison(a, b)


def format_markdown(comparison: Comparison, top: int) -> str:
    """The overall lines and the ``top`` most improved / degraded classes as Markdown tables."""
    a, b = comparison.a.label, comparison.b.label
    lines = [f"| metric | {a} | {b} | gain |", "|---|---:|---:|---:|"]
    lines += [f"| {g.name} | {_cell(g.a)} | {_cell(g.b)} | {_cell(g.gain, signed=True)} |" for g in comparison.overall]
    total = len(comparison.a.classes)
    for title, rows in (("improved", comparison.improved(top)), ("degraded", comparison.degraded(top))):
        if not rows:
            lines += ["", f"No class {title} (of {total})."]
            continue
        lines += ["", f"The {len(rows)} most {title} classes of {total} (IoU, {b} - {a}):", ""]
        lines += [f"| rank | class | {a} | {b} | gain |", "|---:|---|---:|---:|---:|"]
        lines += [
            f"| {rank} | {g.name} | {_cell(g.a)} | {_cell(g.b)} | {_cell(g.gain, signed=True)} |"
            for rank, g in enumerate(rows, 1)
        ]
    undefined = comparison.undefined()
    if undefined:
        lines += ["", f"No IoU on one side (no ground-truth pixel), left out: {', '.join(undefined)}"]
    return "\n".join(lines) + "\n"


def format_csv(comparison: Comparison, top: int) -> str:
    """The same rows as CSV: ``section`` (overall / improved / degraded), ``rank``, ``class``, the two labels,
    ``gain``; values in percent with 4 decimals, empty where undefined."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["section", "rank", "class", comparison.a.label, comparison.b.label, "gain"])
    for g in comparison.overall:
        writer.writerow(["overall", "", g.name, _csv(g.a), _csv(g.b), _csv(g.gain)])
    for section, rows in (("improved", comparison.improved(top)), ("degraded", comparison.degraded(top))):
        for rank, g in enumerate(rows, 1):
            writer.writerow([section, rank, g.name, _csv(g.a), _csv(g.b), _csv(g.gain)])
    return out.getvalue()


def check_chart_support() -> None:
    """CompareError with the install command when matplotlib (the optional ``plot`` extra) is missing: called before
    any work by a command asked for a chart, so nothing is half done."""
    try:
        import matplotlib.backends.backend_agg  # noqa: F401
        import matplotlib.figure  # noqa: F401
    except ImportError:
        raise CompareError("matplotlib is not installed: pip install 'freemask[plot]' (or pip install matplotlib)")


def plot_gains(comparison: Comparison, top: int, output: str, dpi: int = 100) -> None:
    """A horizontal bar chart PNG of the ``top`` most improved (green) and degraded (red) classes' gains, one bar
    per class named on the axis, written atomically to ``output``."""
    check_chart_support()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = comparison.improved(top) + comparison.degraded(top)[::-1]  # best at the top, worst at the bottom
    figure = Figure(figsize=(8, 1.2 + 0.32 * max(len(rows), 1)), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    positions = list(range(len(rows)))[::-1]
    gains = [g.gain for g in rows]
    ax.barh(positions, gains, color=["tab:green" if v > 0 else "tab:red" for v in gains])
    ax.set_yticks(positions, [g.name for g in rows])
    for y, value in zip(positions, gains):
        side = 1 if value > 0 else -1
        ax.annotate(
            f"{value:+.2f}",
            (value, y),
            xytext=(3 * side, 0),
            textcoords="offset points",
            va="center",
            ha="left" if side > 0 else "right",
            fontsize="small",
        )
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.margins(x=0.15)
    a, b = comparison.a.label, comparison.b.label
    miou = comparison.overall[0].gain
    ax.set_title(f"IoU gain per class, {b} - {a} (mIoU {_cell(miou, signed=True)})")
    ax.set_xlabel("IoU gain (points)")
    if not rows:
        ax.text(0.5, 0.5, "no class changed", transform=ax.transAxes, ha="center", va="center")
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with atomic_path(output) as tmp:
        figure.savefig(tmp, format="png")


def run_folder(results_file: str) -> str:
    """The output folder a results file belongs to: the one above ``inference/`` (``ms_flip/`` or a test set's
    folder in between), else the file's folder; relative when ``results_file`` is."""
    parts = (os.path.dirname(os.path.normpath(results_file)) or ".").split(os.sep)
    if INFERENCE_DIR in parts[-3:]:
        parts = parts[: len(parts) - 1 - parts[::-1].index(INFERENCE_DIR)]
    return os.sep.join(parts) or (os.sep if os.path.isabs(results_file) else ".")


def run_name(results_file: str) -> str:
    """The name of the run a results file belongs to (its output folder's name), the default label of a side."""
    return os.path.basename(os.path.abspath(run_folder(results_file))) or results_file


def distinct_labels(labels: Sequence[str]) -> List[str]:
    """``labels`` made different when equal (two runs of the same folder name): suffixed `` (A)`` and `` (B)``."""
    if len(set(labels)) == len(labels):
        return list(labels)
    return [f"{label} ({side})" for label, side in zip(labels, "AB")]


def one_clause(error: BaseException) -> str:
    """An exception's message as a clause: its first line."""
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _classes(data: Dict[str, Any]) -> List[str]:
    """The class list: the recorded one, else the ``IoU-<class>`` keys in file order."""
    recorded = data.get(DATASET_KEY)
    if isinstance(recorded, dict) and isinstance(recorded.get("classes"), list):
        return [str(name) for name in recorded["classes"]]
    return [key[len(IOU_PREFIX) :] for key in data if key.startswith(IOU_PREFIX)]


def _evaluate(run: str) -> str:
    """The command that (re-)evaluates the run in ``run``: --eval-only with the run's own config and weights."""
    config, weights = os.path.join(run, "config.yaml"), os.path.join(run, "model_final.pth")
    return hint("train", f"--config-file {config} --eval-only MODEL.WEIGHTS {weights} OUTPUT_DIR {run}")


def _dataset(data: Dict[str, Any], produced_by: Dict[str, Any], file: str) -> Optional[str]:
    """The test set: recorded by the evaluator, else the config's only DATASETS.TEST (an older file, when the
    run had one; with several, the one whose folder the file is in), else unknown."""
    recorded = data.get(DATASET_KEY)
    if isinstance(recorded, dict) and recorded.get("name"):
        return str(recorded["name"])
    config = produced_by.get("config") if isinstance(produced_by.get("config"), dict) else {}
    tests = (config.get("DATASETS") or {}).get("TEST") or []
    if len(tests) == 1:
        return str(tests[0])
    folder = os.path.basename(os.path.dirname(os.path.abspath(file)))
    return folder if folder in tests else None


def _number(value: Any, file: str, key: str) -> Optional[float]:
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return None if value is None else float(value)
    raise CompareError(
        f"{file}: {key} is {value!r}, not a number; evaluate the run again to rewrite it: {_evaluate(run_folder(file))}"
    )


def _few(names: Sequence[str], shown: int = 3) -> str:
    if not names:
        return "none"
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _cell(value: Optional[float], signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def _csv(value: Optional[float]) -> str:
    return "" if value is None else f"{value:.4f}"
