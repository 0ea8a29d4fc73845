"""The command line shared by every ``datasets/prepare_*.py`` script: ``--root``, ``--workers``, ``--force``.

Each script only names its dataset folder and its conversion function, so the options, their defaults and the
one-line error on bad data are the same for every dataset.
"""

import argparse
import os
import sys
from typing import Callable, Optional, Sequence

from ... import cli
from .sem_seg import PrepareResult

PrepareFn = Callable[[str, int, bool], PrepareResult]


def prepare_main(description: str, folder: str, prepare: PrepareFn, argv: Optional[Sequence[str]] = None) -> int:
    """Parse the shared options, run ``prepare(root, workers, force)`` and return its exit code: 0 when every file
    converted, 1 with one ``error:`` line when the data is unusable (a :class:`DatasetError` or a bad id table) or
    the disk is full, 130 after Ctrl-C (the command line's one runner, :func:`freemask.cli.run`)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--root",
        default=os.environ.get("DETECTRON2_DATASETS", "datasets"),
        help=f"folder holding {folder}/ (default: $DETECTRON2_DATASETS or ./datasets)",
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)")
    parser.add_argument("--force", action="store_true", help="convert every mask again, even finished ones")
    args = parser.parse_args(argv)
    return cli.run(_prepare_and_report, prepare, args)


def _prepare_and_report(prepare: PrepareFn, args: argparse.Namespace) -> int:
    try:
        return prepare(args.root, args.workers, args.force).report()
    except ValueError as e:  # DatasetError, or a bad class-id table
        print(f"error: {e}", file=sys.stderr)
        return 1
