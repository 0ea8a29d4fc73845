"""Write FreeSeg's COCO-Stuff seen/unseen semantic splits (171 classes; 156 seen, 15 unseen) and their label counts.
Installed: `freemask prepare coco-stuff-164k-open-vocab ARGS`; in a checkout also
`python datasets/prepare_coco_stuff_164k_open_vocab.py ARGS`, as below.

    python datasets/prepare_coco_stuff_164k_open_vocab.py   # $DETECTRON2_DATASETS (default ./datasets)
    python datasets/prepare_coco_stuff_164k_open_vocab.py --root /data --workers 16

First does what the coco-stuff-164k-sem-seg preparation does (coco/stuffthingmaps_detectron2/{train,val}2017/, 0..170;
skipped where done), then writes coco/stuffthingmaps_detectron2/{train,val}2017_base/ (the 156 seen classes
re-indexed 0..155, the rest 255) and {train,val}2017_novel/ (the 15 unseen, 0..14), every mask in every folder, and
<folder>_label_count.json for the three folders of each split (stage 1). Safe to interrupt and re-run; --force
converts everything again.
"""

from typing import Optional, Sequence

from freemask.data.prepare.cli import prepare_main
from freemask.data.prepare.open_vocab_datasets import prepare_coco_stuff_open_vocab


def main(argv: Optional[Sequence[str]] = None) -> int:
    return prepare_main(__doc__, "coco", prepare_coco_stuff_open_vocab, argv)

