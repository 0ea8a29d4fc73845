"""Write FreeSeg's COCO "full task" annotations: panoptic, semantic and instance targets over the 171 COCO-Stuff
classes, in all / base (156 seen) / novel (15 unseen) versions.
Installed: `freemask prepare coco-full-task ARGS`; in a checkout also `python datasets/prepare_coco_full_task.py ARGS`,
as below.

    python datasets/prepare_coco_full_task.py              # $DETECTRON2_DATASETS (default ./datasets)
    python datasets/prepare_coco_full_task.py --root /data --workers 16

Needs coco/annotations/{panoptic,instances}_{train,val}2017.json, coco/panoptic_{train,val}2017/ and
coco/stuffthingmaps_trainval2017/. Runs the COCO-Stuff steps first (the coco-stuff-164k-open-vocab preparation), then
writes coco/panoptic_detectron2/{train,val}2017/ + panoptic_{train,val}2017.json (things: COCO's panoptic thing
segments; stuff: one segment per COCO-Stuff stuff class of the stuffthingmap, where no thing is), their _base / _novel
versions (the other split's segments void) and panoptic_detectron2/instances_{train,val}2017_{base,novel}.json.
Sequential results in the JSON whatever --workers is (FreeSeg's --nproc > 1 keeps the input's segments_info). Safe to
interrupt and re-run; --force redoes everything.
"""

from typing import Optional, Sequence

from freemask.data.prepare.cli import prepare_main
from freemask.data.prepare.coco_full import prepare_coco_full_task


def main(argv: Optional[Sequence[str]] = None) -> int:
    return prepare_main(__doc__, "coco", prepare_coco_full_task, argv)

