#!/usr/bin/env python
"""Convert COCO-Stuff-164K stuffthingmaps (COCO id - 1, 255 = unlabeled) to stuffthingmaps_detectron2/ (0..170, 255).

    python datasets/prepare_coco_stuff_164k_sem_seg.py        # $DETECTRON2_DATASETS (default ./datasets)
    python datasets/prepare_coco_stuff_164k_sem_seg.py --root /data --workers 16

Reads coco/stuffthingmaps_trainval2017/{train2017,val2017}/*.png and writes the same names under
coco/stuffthingmaps_detectron2/. Class k is the k-th of the 171 ids COCO-Stuff uses (80 things, 91 stuff, listed in
freemask/data/datasets/meta/coco_stuff_171.json); the 11 unused ids and unlabeled pixels become 255. Safe to
interrupt and re-run: finished masks are skipped; --force converts everything again.
"""

import argparse
import os
import sys

from freemask.data.prepare import prepare_coco_stuff


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--root",
        default=os.environ.get("DETECTRON2_DATASETS", "datasets"),
        help="folder holding coco/ (default: $DETECTRON2_DATASETS or ./datasets)",
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)")
    parser.add_argument("--force", action="store_true", help="convert every mask again, even finished ones")
    args = parser.parse_args(argv)
    try:
        return prepare_coco_stuff(args.root, args.workers, args.force).report()
    except ValueError as e:  # DatasetError, or a bad class-id table
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
