"""Which classes gained and which lost between two semantic evaluations of the same test set (IoU of B - IoU of A).
Installed: `freemask compare ARGS`; in a checkout also `python tools/compare_runs.py ARGS`, as below.

    python tools/compare_runs.py output/real_only output/joint                    # Markdown table on stdout
    python tools/compare_runs.py output/real_only output/joint --top 5 --format csv --output gains.csv
    python tools/compare_runs.py A/inference/sem_seg_results.json B/inference/sem_seg_results.json --chart gains.png

A and B are training output folders (meaning their inference/sem_seg_results.json, which holds the run's last
evaluation; the single-scale one when TEST.AUG.EVAL_BOTH also wrote inference/ms_flip/) or results files. Prints the
mIoU / pACC of both and their gain, then the N most improved and the N most degraded classes, with their IoU on
both sides; which file each side read goes to stderr. Results of different test sets or class lists are refused.
--chart draws the same gains as a bar chart and needs matplotlib (pip install 'freemask[plot]').
"""

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence

from freemask import cli
from freemask.utils.atomic import atomic_write_text

FORMATS = ("markdown", "csv")


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", metavar="A", help="the baseline: a training output folder or a sem_seg_results.json")
    parser.add_argument("b", metavar="B", help="the run compared with it (gain = B - A), same test set")
    parser.add_argument("--top", type=int, default=10, metavar="N", help="classes listed each way (default 10)")
    parser.add_argument("--labels", nargs=2, metavar=("LABEL_A", "LABEL_B"), help="column names (default: run names)")
    parser.add_argument(
        "--format", choices=FORMATS, help="table format (default: csv for an --output ending in .csv, else markdown)"
    )
    parser.add_argument("--output", metavar="FILE", help="also write the table to FILE")
    parser.add_argument("--chart", metavar="FILE.png", help="write a bar chart of the listed gains to FILE.png")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``freemask compare`` / ``tools/compare_runs.py``: :func:`compare_runs` through the command-line runner."""
    return cli.run(compare_runs, argv)


def compare_runs(argv: Sequence[str] | None = None) -> int:
    """Read both sides, print the comparison, write the table and the chart when asked."""
    parser = argument_parser()
    args = parser.parse_args(argv)
    if args.top < 1:
        parser.error(f"--top {args.top}: give at least 1 class")
    # Imported after the arguments are parsed: the evaluation package loads torch, --help must not.
    from freemask.evaluation.compare_runs import (
        check_chart_support,
        compare,
        distinct_labels,
        format_csv,
        format_markdown,
        plot_gains,
        read_results,
    )

    if args.chart:
        check_chart_support()
    outputs = [("--output", args.output), ("--chart", args.chart)]
    cli.check_output_folders((flag, os.path.dirname(os.path.abspath(path))) for flag, path in outputs if path)
    sides = [read_results(path) for path in (args.a, args.b)]
    labels = args.labels or distinct_labels([side.label for side in sides])
    sides = [dataclasses.replace(side, label=label) for side, label in zip(sides, labels)]
    comparison = compare(*sides)
    for side in sides:
        print(side.describe(), file=sys.stderr)
    csv_output = args.format == "csv" or (args.format is None and (args.output or "").lower().endswith(".csv"))
    table = (format_csv if csv_output else format_markdown)(comparison, args.top)
    sys.stdout.write(table)
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        atomic_write_text(args.output, table)
        print(f"wrote {args.output}", file=sys.stderr)
    if args.chart:
        plot_gains(comparison, args.top, args.chart)
        print(f"wrote {args.chart}", file=sys.stderr)
    return 0

