#!/usr/bin/env python
"""Convert COCO-Stuff-10k's .mat annotations (COCO-Stuff ids, 0 = unlabeled) to PNG label maps (0..170, 255 = ignore).

    python datasets/prepare_coco_stuff_10k_sem_seg.py         # $DETECTRON2_DATASETS (default ./datasets)
    python datasets/prepare_coco_stuff_10k_sem_seg.py --root /data --workers 16

Reads coco_stuff_10k/annotations/<name>.mat (the label map S) for the names listed in
coco_stuff_10k/imageLists/{train,test}.txt and writes coco_stuff_10k/annotations_detectron2/{train,test}/<name>.png.
Class k is the k-th of the 171 ids COCO-Stuff uses, as for COCO-Stuff-164K (meta/coco_stuff_171.json in
freemask/data/datasets). Needs scipy (to read .mat files). Safe to interrupt and re-run: a map newer than its .mat is
skipped; --force converts everything again.
"""

import argparse
import os
import sys

from freemask.data.errors import DatasetError
from freemask.data.prepare import prepare_coco_stuff_10k


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--root",
        default=os.environ.get("DETECTRON2_DATASETS", "datasets"),
        help="folder holding coco_stuff_10k/ (default: $DETECTRON2_DATASETS or ./datasets)",
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)")
    parser.add_argument("--force", action="store_true", help="convert every map again, even finished ones")
    args = parser.parse_args(argv)
    try:
        return prepare_coco_stuff_10k(args.root, args.workers, args.force).report()
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
