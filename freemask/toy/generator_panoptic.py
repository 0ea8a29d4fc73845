"""The toy dataset's panoptic and instance annotations, in the layout Mask2Former's ADE20K preparation writes.

Why separate from ``generator.py``: the semantic toy files must stay byte-identical (the README's results and
many tests depend on them), so this module only *adds* files. It redraws each scene's layers from the same seeds
(no painting, so it is fast) and turns them into segments: a thing (car, person) is one segment per painted object,
a stuff class (sky, grass, road, building) one segment per class, and the semantic mask's unlabeled borders are
void (id 0). Category ids are the raw toy labels 1..6 (0 is never a category).

Written under ``<root>/toy/ADEChallengeData2016/``::

    ade20k_panoptic_{train,val}/toy_{train,val}_00000.png   RGB, segment id = R + 256 G + 256^2 B
    ade20k_panoptic_{train,val}.json                         COCO panoptic: images, annotations, categories
    ade20k_instance_{train,val}.json                         COCO instances of the things (RLE), for pycocotools
    panoptic_meta.json                                       the parameters, written last (= complete)
"""

import json
import os
from dataclasses import asdict
from typing import Dict, List, Tuple

import numpy as np
from pycocotools import mask as mask_util

from ..data.datasets.panoptic import segment_bbox
from ..data.datasets.toy import REAL_DIR, TOY_CLASSES, TOY_COLORS
from ..data.panoptic_png import id2rgb
from ..utils.atomic import atomic_write_bytes
from .layout import LABEL, ToyParams, sample_layout, write_image

PANOPTIC_FORMAT = 1
THING_LABELS = (LABEL["car"], LABEL["person"])
SPLITS = (("training", "train"), ("validation", "val"))


def toy_categories() -> List[dict]:
    """COCO panoptic categories of the toy dataset: ids 1..6 (the raw labels), car and person are things."""
    return [
        {"id": LABEL[name], "name": name, "isthing": int(LABEL[name] in THING_LABELS), "color": list(color)}
        for name, color in zip(TOY_CLASSES, TOY_COLORS)
    ]


def panoptic_segments(layers, border: np.ndarray) -> Tuple[np.ndarray, List[dict]]:
    """(H, W) int32 segment ids (0 = void) and COCO ``segments_info`` of one scene's layers.

    A pixel belongs to the last layer painted over it, as in the semantic mask; border pixels are void. Segment ids
    are 1, 2, ... in layer order; a layer hidden entirely by later ones (or by the border) gives no segment."""
    owner = np.full(border.shape, -1, np.int32)
    for index, (_, region) in enumerate(layers):
        owner[region] = index
    owner[border] = -1
    ids = np.zeros(border.shape, np.int32)
    segments: List[dict] = []
    stuff_ids: Dict[int, int] = {}
    for index, (label, _) in enumerate(layers):
        where = owner == index
        if not where.any():
            continue
        if label in THING_LABELS:
            seg_id = len(segments) + 1
        elif label in stuff_ids:
            seg_id = stuff_ids[label]
        else:
            seg_id = stuff_ids[label] = len(segments) + 1
        ids[where] = seg_id
        if seg_id > len(segments):
            segments.append({"id": seg_id, "category_id": int(label), "iscrowd": 0})
    for seg in segments:
        where = ids == seg["id"]
        seg["area"], seg["bbox"] = int(where.sum()), segment_bbox(where)
    return ids, segments


def _instance_annotations(ids: np.ndarray, segments: List[dict], image_id: int, first_id: int) -> List[dict]:
    annotations = []
    for seg in segments:
        if seg["category_id"] not in THING_LABELS:
            continue
        rle = mask_util.encode(np.asfortranarray((ids == seg["id"]).astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        annotations.append(
            {
                "id": first_id + len(annotations),
                "image_id": image_id,
                "category_id": seg["category_id"],
                "iscrowd": 0,
                "area": seg["area"],
                "bbox": [float(v) for v in seg["bbox"]],
                "segmentation": rle,
            }
        )
    return annotations


def marker_is_current(marker: str, meta: Dict, force: bool) -> bool:
    """Whether the completion marker ``marker`` (written last) holds ``meta``; a stale one is removed, so an
    interrupted regeneration is never taken for a complete one."""
    if not force and os.path.isfile(marker):
        with open(marker) as f:
            if json.load(f) == meta:
                return True
    if os.path.exists(marker):
        os.remove(marker)
    return False


def generate_toy_panoptic(root: str, params: ToyParams = ToyParams(), force: bool = False) -> bool:
    """Write the panoptic and instance files of the toy dataset under ``<root>/toy``; False (nothing written) when
    they are complete for ``params``. Only adds files: the semantic toy files are never touched."""
    base = os.path.join(root, "toy", REAL_DIR)
    marker = os.path.join(base, "panoptic_meta.json")
    meta = {"panoptic_format": PANOPTIC_FORMAT, **asdict(params)}
    if marker_is_current(marker, meta, force):
        return False
    size = (params.height, params.width)
    categories = toy_categories()
    for split_id, ((split, short), count) in enumerate(zip(SPLITS, (params.num_train, params.num_val))):
        pan_dir = os.path.join(base, f"ade20k_panoptic_{short}")
        os.makedirs(pan_dir, exist_ok=True)
        images, pan_annotations, ins_annotations = [], [], []
        for index in range(count):
            stem = f"toy_{short}_{index:05d}"
            # the same generator and seed as generator.generate_toy_dataset, hence the same layers and borders
            layers, border = sample_layout(*size, np.random.default_rng([params.seed, split_id, index]))
            ids, segments = panoptic_segments(layers, border)
            write_image(os.path.join(pan_dir, stem + ".png"), ".png", id2rgb(ids)[..., ::-1])
            images.append({"id": index, "file_name": stem + ".jpg", "height": size[0], "width": size[1]})
            pan_annotations.append({"image_id": index, "file_name": stem + ".png", "segments_info": segments})
            ins_annotations += _instance_annotations(ids, segments, index, len(ins_annotations) + 1)
        panoptic = {"images": images, "annotations": pan_annotations, "categories": categories}
        instances = {
            "images": images,
            "annotations": ins_annotations,
            "categories": [{"id": c["id"], "name": c["name"]} for c in categories if c["isthing"]],
        }
        atomic_write_bytes(os.path.join(base, f"ade20k_panoptic_{short}.json"), json.dumps(panoptic).encode())
        atomic_write_bytes(os.path.join(base, f"ade20k_instance_{short}.json"), json.dumps(instances).encode())
    atomic_write_bytes(marker, json.dumps(meta, indent=2).encode())
    return True
