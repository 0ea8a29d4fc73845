"""Preparation of the panoptic datasets: COCO panoptic -> semantic maps, ADE20K -> panoptic + instance files.

What Mask2Former's ``datasets/prepare_coco_semantic_annos_from_panoptic_annos.py`` and
``prepare_ade20k_{pan,ins}_seg.py`` write, by our own code (no detectron2, panopticapi or mmcv):

- COCO: ``panoptic_semseg_{train,val}2017/<name>.png``, uint8, each pixel the contiguous id (0..132, position in
  ``meta/coco_panoptic_133.json``) of its segment's category, crowd segments included, void 255.
- ADE20K: ``ade20k_panoptic_{train,val}/<stem>.png`` + ``ade20k_panoptic_{train,val}.json`` and
  ``ade20k_instance_{train,val}.json`` from ``annotations/`` (raw SceneParsing, 0 = unlabeled, 1..150) and
  ``annotations_instance/`` (RGB PNGs: R = instance class 1..100, G = instance index, 0 = none). Stuff segments are
  the semantic map's stuff classes (one per class); thing segments are the instances (one per G value, its class
  mapped to a SceneParsing id by ``meta/ade20k_instance_100.json``), painted over the stuff. Category ids are the
  0-based SceneParsing ids; image ids are file stems, as Mask2Former writes them.

Parallel, atomic and idempotent like ``sem_seg.py``: COCO reuses its per-file machinery; an ADE20K split is done
when its two JSON files exist (they are written last, atomically), and ``--force`` redoes it.
"""

import contextlib
import functools
import json
import os
from typing import Dict, List, Mapping, Sequence, Tuple

import cv2
import numpy as np
from pycocotools import mask as mask_util
from tqdm import tqdm

from ...utils.atomic import atomic_write_bytes, atomic_write_json
from ...utils.worker_pool import process_pool
from ..datasets.ade20k_panoptic import ade20k_instance_to_ade150, ade20k_panoptic_categories
from ..datasets.coco_panoptic import coco_panoptic_categories
from ..datasets.panoptic import segment_bbox
from ..datasets.sem_seg import IGNORE_LABEL
from ..errors import DatasetError
from ..panoptic_png import id2rgb, read_panoptic_png
from .sem_seg import PrepareResult, convert_masks

COCO_PANOPTIC_SPLITS = ("train2017", "val2017")
ADE20K_PANOPTIC_SPLITS = (("training", "train"), ("validation", "val"))

Segments = List[Tuple[int, int]]  # (segment id, contiguous class) of one panoptic PNG


# ---- COCO panoptic -> semantic ---------------------------------------------------------------------------------------
def _coco_read_ids(path: str, table: Mapping[str, Segments]) -> np.ndarray:
    return read_panoptic_png(path, [{"id": seg_id} for seg_id, _ in table[path]])


def _coco_ids_to_semantic(ids: np.ndarray, path: str, table: Mapping[str, Segments]) -> np.ndarray:
    """(H, W) segment ids -> uint8 contiguous class per pixel, 255 where no segment (void)."""
    out = np.full(ids.shape, IGNORE_LABEL, np.uint8)
    for seg_id, label in table[path]:
        out[ids == seg_id] = label
    return out


def coco_panoptic_table(json_file: str, panoptic_root: str, contiguous: Mapping[int, int]) -> Dict[str, Segments]:
    """PNG path -> its (segment id, contiguous class) pairs, from a COCO panoptic JSON; DatasetError naming the
    JSON on a category outside ``contiguous`` or a PNG that does not exist."""
    if not os.path.isfile(json_file):
        raise DatasetError(
            f"COCO panoptic JSON not found: {json_file}; unzip panoptic_annotations_trainval2017.zip into "
            f"coco/annotations (see datasets/README.md) or pass --root"
        )
    with open(json_file, encoding="utf-8") as f:
        data = json.load(f)
    table = {}
    for ann in data["annotations"]:
        path = os.path.join(panoptic_root, ann["file_name"])
        if not os.path.isfile(path):
            raise DatasetError(f"{json_file}: names panoptic PNG {path}, which does not exist; unzip it there")
        pairs = []
        for seg in ann["segments_info"]:
            if seg["category_id"] not in contiguous:
                raise DatasetError(
                    f"{json_file}: segment {seg['id']} of {ann['file_name']} has category_id {seg['category_id']}, "
                    f"not one of the {len(contiguous)} COCO panoptic categories"
                )
            pairs.append((int(seg["id"]), contiguous[seg["category_id"]]))
        table[path] = pairs
    return table


def prepare_coco_panoptic_sem_seg(
    root: str, workers: int = 0, force: bool = False, progress: bool = True
) -> PrepareResult:
    """``<root>/coco/panoptic_<split>/`` + ``annotations/panoptic_<split>.json`` -> ``panoptic_semseg_<split>/``."""
    base = os.path.join(root, "coco")
    contiguous = coco_panoptic_categories().contiguous
    tables = [
        (
            split,
            coco_panoptic_table(
                os.path.join(base, "annotations", f"panoptic_{split}.json"),
                os.path.join(base, f"panoptic_{split}"),
                contiguous,
            ),
        )
        for split in COCO_PANOPTIC_SPLITS
    ]
    result = PrepareResult()
    for split, table in tables:
        pairs = [(src, os.path.join(base, f"panoptic_semseg_{split}", os.path.basename(src))) for src in sorted(table)]
        result.add(
            convert_masks(
                pairs,
                functools.partial(_coco_ids_to_semantic, table=table),
                workers,
                force,
                f"COCO panoptic {split}",
                progress,
                reader=functools.partial(_coco_read_ids, table=table),
            )
        )
    return result


# ---- ADE20K panoptic + instance --------------------------------------------------------------------------------------
def _read(path: str, flags: int) -> np.ndarray:
    data = np.fromfile(path, dtype=np.uint8) if os.path.isfile(path) else np.zeros(0, np.uint8)
    image = cv2.imdecode(data, flags) if data.size else None
    if image is None:
        raise DatasetError(f"{path}: missing or not a valid image; re-extract the ADE20K archives")
    return image


def ade20k_image_segments(
    semantic: np.ndarray, instance_rgb: np.ndarray, isthing: Sequence[bool], ins_to_sem: Mapping[int, int], path: str
) -> Tuple[np.ndarray, List[dict], List[Tuple[int, np.ndarray]]]:
    """(segment ids (H, W) int32, COCO segments_info, [(category id, bool mask)] of the things) of one image.

    ``semantic``: raw (H, W) 0..150; ``instance_rgb``: (H, W, 3) RGB instance PNG; ``path`` names it in errors."""
    if semantic.shape != instance_rgb.shape[:2]:
        raise DatasetError(f"{path}: size {instance_rgb.shape[:2]} differs from its semantic map's {semantic.shape}")
    ids = np.zeros(semantic.shape, np.int32)
    segments, things = [], []
    labels = semantic.astype(np.int32) - 1  # -1 = unlabeled
    for cat in np.unique(labels):
        if cat < 0 or isthing[cat]:
            continue
        segments.append({"id": len(segments) + 1, "category_id": int(cat), "mask": labels == cat})
    classes, index = instance_rgb[..., 0], instance_rgb[..., 1]
    for value in np.unique(index):
        if value == 0:
            continue
        mask = index == value
        found = np.unique(classes[mask])
        if len(found) != 1 or int(found[0]) not in ins_to_sem:
            raise DatasetError(
                f"{path}: instance {value} has instance classes {found.tolist()}; expected one class in 1..100 "
                f"(R channel) — is this an ADE20K annotations_instance PNG?"
            )
        cat = ins_to_sem[int(found[0])]
        segments.append({"id": len(segments) + 1, "category_id": cat, "mask": mask})
        things.append((cat, mask))
    for seg in segments:  # things last, so they cover the stuff where the two annotations overlap
        ids[seg["mask"]] = seg["id"]
    info = []
    for seg in segments:
        visible = ids == seg["id"]
        if visible.any():
            info.append(
                {
                    "id": seg["id"],
                    "category_id": seg["category_id"],
                    "area": int(visible.sum()),
                    "bbox": segment_bbox(visible),
                    "iscrowd": 0,
                }
            )
    return ids, info, things


def _ade20k_one(job: Tuple[str, str, str, str], isthing: Tuple[bool, ...], ins_to_sem: Dict[int, int]):
    """One image: writes its panoptic PNG; returns (image, panoptic annotation, instance annotations) or an error."""
    image_path, sem_path, ins_path, out_path = job
    stem = os.path.splitext(os.path.basename(image_path))[0]
    try:
        semantic = _read(sem_path, cv2.IMREAD_UNCHANGED)
        instance = _read(ins_path, cv2.IMREAD_COLOR)[..., ::-1]
        ids, info, things = ade20k_image_segments(semantic, instance, isthing, ins_to_sem, ins_path)
        ok, data = cv2.imencode(".png", id2rgb(ids)[..., ::-1])
        if not ok:
            raise DatasetError(f"{out_path}: could not encode the panoptic PNG; check free disk space and retry")
        atomic_write_bytes(out_path, data.tobytes())
    except DatasetError as e:
        return None, str(e)
    h, w = semantic.shape
    instances = []
    for cat, mask in things:
        rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        x, y, bw, bh = segment_bbox(mask)
        instances.append(
            {
                "image_id": stem,
                "category_id": cat,
                "iscrowd": 0,
                "bbox": [x, y, bw, bh],
                "segmentation": rle,
                "area": int(mask.sum()),
            }
        )
    image = {"id": stem, "file_name": stem + ".jpg", "height": h, "width": w}
    return (image, {"image_id": stem, "file_name": stem + ".png", "segments_info": info}, instances), ""


def prepare_ade20k_panoptic(root: str, workers: int = 0, force: bool = False, progress: bool = True) -> PrepareResult:
    """``<root>/ADEChallengeData2016/{images,annotations,annotations_instance}/<split>`` -> the panoptic PNGs and
    JSON and the instance JSON of Mask2Former (module docstring), for training and validation."""
    base = os.path.join(root, "ADEChallengeData2016")
    categories = ade20k_panoptic_categories()
    ins_to_sem = ade20k_instance_to_ade150()
    jobs_by_split = []
    for folder, short in ADE20K_PANOPTIC_SPLITS:
        for sub in ("images", "annotations", "annotations_instance"):
            if not os.path.isdir(os.path.join(base, sub, folder)):
                raise DatasetError(
                    f"ADE20K {sub} not found: {os.path.join(base, sub, folder)}; unzip ADEChallengeData2016.zip and "
                    f"the instance annotations (annotations_instance.tar) under {base} (see datasets/README.md)"
                )
        stems = sorted(n[:-4] for n in os.listdir(os.path.join(base, "images", folder)) if n.endswith(".jpg"))
        out_dir = os.path.join(base, f"ade20k_panoptic_{short}")
        jobs = [
            (
                os.path.join(base, "images", folder, s + ".jpg"),
                os.path.join(base, "annotations", folder, s + ".png"),
                os.path.join(base, "annotations_instance", folder, s + ".png"),
                os.path.join(out_dir, s + ".png"),
            )
            for s in stems
        ]
        jobs_by_split.append((short, out_dir, jobs))
    result = PrepareResult()
    task = functools.partial(_ade20k_one, isthing=categories.isthing, ins_to_sem=ins_to_sem)
    json_categories = [
        {"id": i, "name": n, "isthing": int(t), "color": list(c)}
        for i, n, t, c in zip(categories.ids, categories.names, categories.isthing, categories.colors)
    ]
    for short, out_dir, jobs in jobs_by_split:
        pan_json = os.path.join(base, f"ade20k_panoptic_{short}.json")
        ins_json = os.path.join(base, f"ade20k_instance_{short}.json")
        if not force and os.path.isfile(pan_json) and os.path.isfile(ins_json):
            result.skipped += len(jobs)
            continue
        os.makedirs(out_dir, exist_ok=True)
        images, annotations, instances = [], [], []
        errors = []
        bar = tqdm(total=len(jobs), desc=f"ADE20K panoptic {short}", unit="file", disable=not progress)
        with bar, process_pool(workers) if workers > 1 else contextlib.nullcontext() as pool:
            if pool is None:
                outputs = map(task, jobs)
            else:
                outputs = pool.map(task, jobs, chunksize=max(1, min(64, len(jobs) // (workers * 16))))
            for output, error in outputs:
                if output is None:
                    errors.append(error)
                else:
                    images.append(output[0])
                    annotations.append(output[1])
                    instances.extend(output[2])
                bar.update()
        result.errors.extend(errors)
        result.converted += len(jobs) - len(errors)
        if errors:
            continue  # no JSON: the split is not done, a re-run redoes it
        for ann_id, ann in enumerate(instances, start=1):
            ann["id"] = ann_id
        thing_categories = [{"id": c["id"], "name": c["name"]} for c in json_categories if c["isthing"]]
        instance_file = {"images": images, "annotations": instances, "categories": thing_categories}
        panoptic_file = {"images": images, "annotations": annotations, "categories": json_categories}
        atomic_write_json(ins_json, instance_file, indent=None, final_newline=False)
        atomic_write_json(pan_json, panoptic_file, indent=None, final_newline=False)
    return result
