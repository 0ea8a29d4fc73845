"""Convert COCO-Stuff-10k's .mat annotations (COCO-Stuff ids, 0 = unlabeled) to PNG label maps (0..170, 255 = ignore).
Installed: `freemask prepare coco-stuff-10k-sem-seg ARGS`; in a checkout also
`python datasets/prepare_coco_stuff_10k_sem_seg.py ARGS`, as below.

    python datasets/prepare_coco_stuff_10k_sem_seg.py         # $DETECTRON2_DATASETS (default ./datasets)
    python datasets/prepare_coco_stuff_10k_sem_seg.py --root /data --workers 16

Reads coco_stuff_10k/annotations/<name>.mat (the label map S) for the names listed in
coco_stuff_10k/imageLists/{train,test}.txt and writes coco_stuff_10k/annotations_detectron2/{train,test}/<name>.png.
Class k is the k-th of the 171 ids COCO-Stuff uses, as for COCO-Stuff-164K (meta/coco_stuff_171.json in
freemask/data/datasets). Needs scipy (to read .mat files). Safe to interrupt and re-run: a map newer than its .mat is
skipped; --force converts everything again.
"""

from typing import Optional, Sequence

from freemask.data.prepare.cli import prepare_main
from freemask.data.prepare.sem_seg import prepare_coco_stuff_10k


def main(argv: Optional[Sequence[str]] = None) -> int:
    return prepare_main(__doc__, "coco_stuff_10k", prepare_coco_stuff_10k, argv)

