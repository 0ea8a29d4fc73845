#!/usr/bin/env python
"""Convert ADE20K's raw masks (0 = unlabeled, 1..150) to annotations_detectron2/ (0..149, 255 = ignore).

    python datasets/prepare_ade20k_sem_seg.py                 # $DETECTRON2_DATASETS (default ./datasets)
    python datasets/prepare_ade20k_sem_seg.py --root /data --workers 16

Reads ADEChallengeData2016/annotations/{training,validation}/*.png and writes the same names under
ADEChallengeData2016/annotations_detectron2/. Safe to interrupt and re-run: finished masks are skipped (an output
is kept when it is a complete 8-bit grey PNG of the input's size); --force converts everything again.
"""

import argparse
import os
import sys

from freemask.data.errors import DatasetError
from freemask.data.prepare import prepare_ade20k


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--root",
        default=os.environ.get("DETECTRON2_DATASETS", "datasets"),
        help="folder holding ADEChallengeData2016/ (default: $DETECTRON2_DATASETS or ./datasets)",
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)")
    parser.add_argument("--force", action="store_true", help="convert every mask again, even finished ones")
    args = parser.parse_args(argv)
    try:
        return prepare_ade20k(args.root, args.workers, args.force).report()
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
