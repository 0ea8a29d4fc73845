"""Convert PASCAL VOC 2012's SegmentationClassAug masks into FreeSeg's VOC splits (20 classes; 15 seen, 5 unseen).
Installed: `freemask prepare voc-sem-seg ARGS`; in a checkout also `python datasets/prepare_voc_sem_seg.py ARGS`, as
below.

    python datasets/prepare_voc_sem_seg.py                 # $DETECTRON2_DATASETS (default ./datasets)
    python datasets/prepare_voc_sem_seg.py --root /data --workers 16

Reads VOC2012/SegmentationClassAug/<name>.png for the names of VOC2012/train.txt and VOC2012/val.txt and writes
VOC2012/annotations_detectron2/{train,val}/ (background 0 and boundary 255 -> 255, class k + 1 -> k, 0..19),
{train,val}_base/ (the 15 seen classes re-indexed 0..14, the others 255) and {train,val}_novel/ (the 5 unseen
pottedplant, sheep, sofa, train, tvmonitor as 0..4), every mask in every folder, plus <folder>_label_count.json
(the classes of each mask, for stage 1). Safe to interrupt and re-run: finished masks are skipped; --force redoes all.
"""

from typing import Optional, Sequence

from freemask.data.prepare.cli import prepare_main
from freemask.data.prepare.open_vocab_datasets import prepare_voc


def main(argv: Optional[Sequence[str]] = None) -> int:
    return prepare_main(__doc__, "VOC2012", prepare_voc, argv)

