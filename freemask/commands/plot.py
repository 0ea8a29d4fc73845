"""Draw the loss, learning-rate and mIoU curves of one or more training runs into one PNG.
Installed: `freemask plot ARGS`; in a checkout also `python tools/plot_metrics.py ARGS`, as below.

    python tools/plot_metrics.py output/toy_semantic_fpn_R18                       # -> that folder's metrics.png
    python tools/plot_metrics.py output/real_only output/joint --labels real joint --output compare.png

Each OUTPUT_DIR must hold the metrics.json that train_net.py writes; several runs share each panel, one line each
(labelled by folder name unless --labels), each run in one colour on every panel. Default output:
OUTPUT_DIR/metrics.png for one run, ./metrics.png for several. Needs matplotlib (pip install 'freemask[plot]').
"""

import argparse
import os
import sys
from collections.abc import Sequence

from freemask import cli
from freemask.utils.plot_metrics import MetricsError, plot_runs, read_metrics


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output_dirs", nargs="+", metavar="OUTPUT_DIR", help="training output folders")
    parser.add_argument("--labels", nargs="+", metavar="LABEL", help="one legend label per OUTPUT_DIR")
    parser.add_argument("--output", metavar="FILE.png", help="where to write the figure (see above for the default)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``freemask plot`` / ``tools/plot_metrics.py``: :func:`plot` through the command-line runner."""
    return cli.run(plot, argv)


def plot(argv: Sequence[str] | None = None) -> int:
    """Read each OUTPUT_DIR's metrics.json and draw the runs into one PNG."""
    parser = argument_parser()
    args = parser.parse_args(argv)
    if args.labels and len(args.labels) != len(args.output_dirs):
        parser.error(f"--labels gives {len(args.labels)} labels for {len(args.output_dirs)} OUTPUT_DIRs")
    labels = args.labels or [os.path.basename(os.path.normpath(d)) or d for d in args.output_dirs]
    single = os.path.join(args.output_dirs[0], "metrics.png")
    output = args.output or (single if len(args.output_dirs) == 1 else "metrics.png")
    try:
        runs = [(label, read_metrics(d)) for label, d in zip(labels, args.output_dirs)]
        plot_runs(runs, output)
    except MetricsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {output} ({len(runs)} run{'s' if len(runs) > 1 else ''})")
    return 0

