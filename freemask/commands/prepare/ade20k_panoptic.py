"""Write ADE20K's panoptic and instance files (Mask2Former's) from the SceneParsing and instance annotations.
Installed: `freemask prepare ade20k-panoptic ARGS`; in a checkout also
`python datasets/prepare_ade20k_panoptic.py ARGS`, as below.

    python datasets/prepare_ade20k_panoptic.py              # $DETECTRON2_DATASETS (default ./datasets)
    python datasets/prepare_ade20k_panoptic.py --root /data --workers 16

Reads ADEChallengeData2016/{images,annotations,annotations_instance}/{training,validation}/ and writes
ADEChallengeData2016/ade20k_panoptic_{train,val}/*.png, ade20k_panoptic_{train,val}.json and
ade20k_instance_{train,val}.json (stuff from the semantic maps, one segment per class; things from the instance
PNGs, one per instance; categories 0..149). The ade20k_panoptic_* splits also need annotations_detectron2/
(the ade20k-sem-seg preparation). A split is skipped when both its JSON files exist; --force redoes it.
"""

from typing import Optional, Sequence

from freemask.data.prepare.cli import prepare_main
from freemask.data.prepare.panoptic import prepare_ade20k_panoptic


def main(argv: Optional[Sequence[str]] = None) -> int:
    return prepare_main(__doc__, "ADEChallengeData2016", prepare_ade20k_panoptic, argv)

