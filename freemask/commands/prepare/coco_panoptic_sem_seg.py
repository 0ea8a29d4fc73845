"""Write COCO panoptic's semantic maps (coco/panoptic_semseg_{train,val}2017/) from the panoptic annotations.
Installed: `freemask prepare coco-panoptic-sem-seg ARGS`; in a checkout also
`python datasets/prepare_coco_panoptic_sem_seg.py ARGS`, as below.

    python datasets/prepare_coco_panoptic_sem_seg.py        # $DETECTRON2_DATASETS (default ./datasets)
    python datasets/prepare_coco_panoptic_sem_seg.py --root /data --workers 16

Reads coco/annotations/panoptic_{train,val}2017.json and coco/panoptic_{train,val}2017/*.png; each pixel of the
output is the contiguous id (0..132) of its segment's category (the order of
freemask/data/datasets/meta/coco_panoptic_133.json, Mask2Former's), void pixels 255. The *_panoptic_with_sem_seg
splits need it. Safe to interrupt and re-run: finished maps are skipped; --force converts everything again.
"""

from typing import Optional, Sequence

from freemask.data.prepare.cli import prepare_main
from freemask.data.prepare.panoptic import prepare_coco_panoptic_sem_seg


def main(argv: Optional[Sequence[str]] = None) -> int:
    return prepare_main(__doc__, "coco", prepare_coco_panoptic_sem_seg, argv)

