"""Convert COCO-Stuff-164K stuffthingmaps (COCO id - 1, 255 = unlabeled) to stuffthingmaps_detectron2/ (0..170, 255).
Installed: `freemask prepare coco-stuff-164k-sem-seg ARGS`; in a checkout also
`python datasets/prepare_coco_stuff_164k_sem_seg.py ARGS`, as below.

    python datasets/prepare_coco_stuff_164k_sem_seg.py        # $DETECTRON2_DATASETS (default ./datasets)
    python datasets/prepare_coco_stuff_164k_sem_seg.py --root /data --workers 16

Reads coco/stuffthingmaps_trainval2017/{train2017,val2017}/*.png and writes the same names under
coco/stuffthingmaps_detectron2/. Class k is the k-th of the 171 ids COCO-Stuff uses (80 things, 91 stuff, listed in
freemask/data/datasets/meta/coco_stuff_171.json); the 11 unused ids and unlabeled pixels become 255. Safe to
interrupt and re-run: finished masks are skipped; --force converts everything again.
"""

from typing import Optional, Sequence

from freemask.data.prepare.cli import prepare_main
from freemask.data.prepare.sem_seg import prepare_coco_stuff


def main(argv: Optional[Sequence[str]] = None) -> int:
    return prepare_main(__doc__, "coco", prepare_coco_stuff, argv)

