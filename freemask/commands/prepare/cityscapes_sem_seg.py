"""Convert Cityscapes' gtFine label-id maps to train-id maps (19 classes 0..18, 255 = ignore).
Installed: `freemask prepare cityscapes-sem-seg ARGS`; in a checkout also
`python datasets/prepare_cityscapes_sem_seg.py ARGS`, as below.

    python datasets/prepare_cityscapes_sem_seg.py             # $DETECTRON2_DATASETS (default ./datasets)
    python datasets/prepare_cityscapes_sem_seg.py --root /data --workers 16

Reads cityscapes/gtFine/{train,val}/<city>/*_gtFine_labelIds.png and writes *_gtFine_labelTrainIds.png beside each,
the files cityscapesScripts' createTrainIdLabelImgs makes (from the polygons; the two agree on every pixel the
polygons label). The label-id -> train-id table is freemask/data/datasets/meta/cityscapes_19.json. Safe to interrupt
and re-run: finished maps are skipped; --force converts everything again.
"""

from typing import Optional, Sequence

from freemask.data.prepare.cli import prepare_main
from freemask.data.prepare.sem_seg import prepare_cityscapes


def main(argv: Optional[Sequence[str]] = None) -> int:
    return prepare_main(__doc__, "cityscapes", prepare_cityscapes, argv)

