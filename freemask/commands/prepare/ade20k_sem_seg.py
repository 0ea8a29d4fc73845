"""Convert ADE20K's raw masks (0 = unlabeled, 1..150) to annotations_detectron2/ (0..149, 255 = ignore).
Installed: `freemask prepare ade20k-sem-seg ARGS`; in a checkout also `python datasets/prepare_ade20k_sem_seg.py ARGS`,
as below.

    python datasets/prepare_ade20k_sem_seg.py                 # $DETECTRON2_DATASETS (default ./datasets)
    python datasets/prepare_ade20k_sem_seg.py --root /data --workers 16

Reads ADEChallengeData2016/annotations/{training,validation}/*.png and writes the same names under
ADEChallengeData2016/annotations_detectron2/. Safe to interrupt and re-run: finished masks are skipped (an output
is kept when it is a complete 8-bit grey PNG of the input's size); --force converts everything again.
"""

from typing import Optional, Sequence

from freemask.data.prepare.cli import prepare_main
from freemask.data.prepare.sem_seg import prepare_ade20k


def main(argv: Optional[Sequence[str]] = None) -> int:
    return prepare_main(__doc__, "ADEChallengeData2016", prepare_ade20k, argv)

