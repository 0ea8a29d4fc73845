"""Write FreeSeg's ADE20K seen/unseen splits (150 classes; 135 seen, 15 unseen): semantic, panoptic and instance.
Installed: `freemask prepare ade20k-open-vocab ARGS`; in a checkout also
`python datasets/prepare_ade20k_open_vocab.py ARGS`, as below.

    python datasets/prepare_ade20k_open_vocab.py           # $DETECTRON2_DATASETS (default ./datasets)
    python datasets/prepare_ade20k_open_vocab.py --root /data --workers 16

Runs the ade20k-panoptic preparation first (Mask2Former's panoptic and instance files; needs annotations_instance/;
skipped where done), then writes under ADEChallengeData2016/: annotations_detectron2/{training,validation}
[_base|_novel]/ (0..149, or the split's ids; 255 elsewhere) with their _label_count.json,
ade20k_panoptic_{train,val}_{base,novel}/ + .json (the other split's segments void) and
ade20k_instance_{train,val}_{base,novel}.json. Safe to interrupt and re-run; --force redoes everything.
"""

from typing import Optional, Sequence

from freemask.data.prepare.cli import prepare_main
from freemask.data.prepare.open_vocab_datasets import prepare_ade20k_open_vocab


def main(argv: Optional[Sequence[str]] = None) -> int:
    return prepare_main(__doc__, "ADEChallengeData2016", prepare_ade20k_open_vocab, argv)

