"""Write FreeMask's synthetic masks in FreeSeg's seen-class vocabulary, for the *_base synthetic splits of stage 2.
Installed: `freemask prepare synthetic-open-vocab ARGS`; in a checkout also
`python datasets/prepare_synthetic_open_vocab.py ARGS`, as below.

    python datasets/prepare_synthetic_open_vocab.py           # $DETECTRON2_DATASETS (default ./datasets)
    python datasets/prepare_synthetic_open_vocab.py --root /data --workers 16

For every synthetic root found under --root (ADE20K_Synthetic/: 150 -> 135 seen classes, COCO_Synthetic/:
171 -> 156, toy/ADE20K_Synthetic/: 6 -> 4) writes annotations_base/ from annotations/ and, when
`freemask filter` has written it, annotations_filtered_base/ from annotations_filtered/: the seen classes
re-indexed 0..S-1, unseen and unlabeled pixels 255. Read by ade20k_syn[_filtered|_resampled]_sem_seg_train_base,
coco_2017_syn[_filtered|_resampled]_stuff_sem_seg_train_base and toy_syn[_filtered|_resampled]_sem_seg_train_base.
Safe to interrupt and re-run (re-run it after `freemask filter`); --force converts everything again.
"""

from typing import Optional, Sequence

from freemask.data.prepare.cli import prepare_main
from freemask.data.prepare.synthetic_open_vocab import prepare_synthetic_open_vocab


def main(argv: Optional[Sequence[str]] = None) -> int:
    folders = "ADE20K_Synthetic, COCO_Synthetic or toy/ADE20K_Synthetic"
    return prepare_main(__doc__, folders, prepare_synthetic_open_vocab, argv)

