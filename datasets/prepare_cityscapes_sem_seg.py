#!/usr/bin/env python
"""Convert Cityscapes' gtFine label-id maps to train-id maps (19 classes 0..18, 255 = ignore).

    python datasets/prepare_cityscapes_sem_seg.py             # $DETECTRON2_DATASETS (default ./datasets)
    python datasets/prepare_cityscapes_sem_seg.py --root /data --workers 16

Reads cityscapes/gtFine/{train,val}/<city>/*_gtFine_labelIds.png and writes *_gtFine_labelTrainIds.png beside each,
the files cityscapesScripts' createTrainIdLabelImgs makes (from the polygons; the two agree on every pixel the
polygons label). The label-id -> train-id table is freemask/data/datasets/meta/cityscapes_19.json. Safe to interrupt
and re-run: finished maps are skipped; --force converts everything again.
"""

import argparse
import os
import sys

from freemask.data.errors import DatasetError
from freemask.data.prepare import prepare_cityscapes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--root",
        default=os.environ.get("DETECTRON2_DATASETS", "datasets"),
        help="folder holding cityscapes/ (default: $DETECTRON2_DATASETS or ./datasets)",
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)")
    parser.add_argument("--force", action="store_true", help="convert every map again, even finished ones")
    args = parser.parse_args(argv)
    try:
        return prepare_cityscapes(args.root, args.workers, args.force).report()
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
