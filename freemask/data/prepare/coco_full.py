"""COCO's "full task" annotations (FreeSeg): panoptic segments over the 171 COCO-Stuff classes, in all, base and novel
versions, with the semantic maps and instance JSONs of the same splits.

FreeSeg's preparation (bytedance/FreeSeg, datasets/prepare_coco_alldata.py, ``convert_to_trainID``) keeps the
*thing* segments of COCO's panoptic PNGs and replaces COCO panoptic's 53 merged stuff classes by COCO-Stuff's 91
stuff classes from the stuffthingmaps, so that one image has panoptic, instance and semantic targets over one
171-class vocabulary. Ours, per image:

- thing segments: the panoptic JSON's segments of thing categories (COCO ids 1..90), crowd ones included (flagged);
- stuff segments: one per COCO-Stuff stuff class present in the prepared stuffthingmap, on its pixels *not* covered
  by a thing segment (FreeSeg paints the stuff over the things; the two annotations overlap on a few border pixels);
- ids renumbered 1, 2, ... (things in JSON order, then stuff by class) so no stuff id can collide with a thing's
  (FreeSeg reuses the grey value as the id); category ids are COCO-Stuff's dataset ids, contiguous via the split.

Written under ``coco/panoptic_detectron2/``: ``{train,val}2017/`` + ``panoptic_{train,val}2017.json``, their
``_base`` / ``_novel`` versions (``open_vocab.split_panoptic``) and ``instances_{train,val}2017_{base,novel}.json``.
The semantic side is ``prepare_coco_stuff_open_vocab`` (run first). Unlike FreeSeg, the JSON's ``segments_info`` is
built in the parent from what each worker returns, so any ``--workers`` gives the same files.
"""

import functools
import os
from typing import Dict, List, Tuple

import numpy as np

from ...commands import hint
from ...utils.atomic import atomic_write_json
from ..datasets.coco_open_vocab import coco_full_task_paths
from ..datasets.open_vocab import OpenVocabSplit, open_vocab_split
from ..datasets.panoptic import read_json, segment_bbox
from ..datasets.sem_seg import IGNORE_LABEL
from ..errors import DatasetError
from ..mappers.semantic import read_mask
from ..panoptic_png import id2rgb, read_panoptic_png
from .open_vocab import json_categories, parallel_map, split_instances, split_panoptic
from .open_vocab_datasets import SPLIT_KINDS, prepare_coco_stuff_open_vocab
from .sem_seg import PrepareResult, write_png_atomic

COCO_FULL_SPLITS = ("train2017", "val2017")
_DOWNLOAD = (
    "download the COCO 2017 panoptic and instance annotations from cocodataset.org and unzip them under "
    "$DETECTRON2_DATASETS/coco (see datasets/README.md)"
)

Job = Tuple[str, List[dict], str, str]  # panoptic PNG, its segments_info, prepared stuff map, output PNG


def full_task_segments(
    pan_ids: np.ndarray, pan_segments: List[dict], stuff: np.ndarray, split: OpenVocabSplit
) -> Tuple[np.ndarray, List[dict]]:
    """(segment ids (H, W) int32, COCO ``segments_info``) of one image (module docstring).

    ``pan_ids``: the panoptic PNG's ids; ``pan_segments``: its JSON segments (COCO panoptic category ids);
    ``stuff``: the prepared stuffthingmap (0..170 contiguous COCO-Stuff ids, 255 unlabeled)."""
    categories = split.categories
    things = {cat for cat, thing in zip(categories.ids, categories.isthing) if thing}
    out = np.zeros(pan_ids.shape, np.int32)
    segments: List[dict] = []

    def add(mask: np.ndarray, category: int, iscrowd: int) -> None:
        seg_id = len(segments) + 1
        out[mask] = seg_id
        segments.append(
            {"id": seg_id, "category_id": category, "iscrowd": iscrowd, "area": int(mask.sum()),
             "bbox": segment_bbox(mask)}
        )  # fmt: skip

    for seg in pan_segments:
        mask = pan_ids == seg["id"]
        if seg["category_id"] in things and mask.any():
            add(mask, int(seg["category_id"]), int(seg.get("iscrowd", 0)))
    free = out == 0
    for label in np.unique(stuff):
        if label == IGNORE_LABEL or categories.isthing[label]:
            continue
        mask = (stuff == label) & free
        if mask.any():
            add(mask, categories.ids[label], 0)
    return out, segments


def _full_task_one(job: Job, split: OpenVocabSplit) -> Tuple[List[dict], str]:
    """One image: writes its full-task PNG, returns (segments_info, "") or ([], error line)."""
    pan_png, pan_segments, stuff_path, out_png = job
    try:
        pan_ids = read_panoptic_png(pan_png, pan_segments)
        stuff = read_mask(stuff_path)
        if stuff.shape != pan_ids.shape:
            raise DatasetError(
                f"{stuff_path}: size {stuff.shape} differs from its panoptic PNG's {pan_ids.shape}; the stuffthingmaps "
                "and the panoptic annotations must both be COCO 2017's"
            )
        labels = np.unique(stuff)
        if labels[labels != IGNORE_LABEL].max(initial=0) >= len(split.categories.ids):
            raise DatasetError(
                f"{stuff_path}: label {labels[labels != IGNORE_LABEL].max()} is not a COCO-Stuff class (0..170); "
                f"re-run {hint('prepare', 'coco-stuff-164k-sem-seg --force')}"
            )
        ids, segments = full_task_segments(pan_ids, pan_segments, stuff, split)
        write_png_atomic(out_png, id2rgb(ids)[..., ::-1])
    except DatasetError as e:
        return [], str(e)
    except OSError as e:
        return [], f"{out_png}: cannot write ({e}); check permissions and free space"
    return segments, ""


def _full_task_all(
    coco: str, folder: str, paths: Dict[str, str], split: OpenVocabSplit, workers: int, progress: bool
) -> PrepareResult:
    """The full-vocabulary panoptic PNGs and JSON of one split (JSON last, from the workers' returned segments)."""
    data = read_json(os.path.join(coco, "annotations", f"panoptic_{folder}.json"), _DOWNLOAD)
    os.makedirs(paths["panoptic_root"], exist_ok=True)
    jobs = [
        (
            os.path.join(coco, f"panoptic_{folder}", ann["file_name"]),
            ann["segments_info"],
            os.path.join(paths["sem_seg_root"], ann["file_name"]),
            os.path.join(paths["panoptic_root"], ann["file_name"]),
        )
        for ann in data["annotations"]
    ]
    task = functools.partial(_full_task_one, split=split)
    result, annotations = PrepareResult(), []
    outputs = parallel_map(task, jobs, workers, f"full task {folder}", progress)
    for ann, (segments, error) in zip(data["annotations"], outputs):
        if error:
            result.errors.append(error)
        annotations.append({"image_id": ann["image_id"], "file_name": ann["file_name"], "segments_info": segments})
    result.converted = len(jobs) - len(result.errors)
    if not result.errors:
        out = {**data, "annotations": annotations, "categories": json_categories(split, "all")}
        atomic_write_json(paths["panoptic_json"], out, indent=None, final_newline=False)
    return result


def prepare_coco_full_task(root: str, workers: int = 0, force: bool = False, progress: bool = True) -> PrepareResult:
    """The COCO-Stuff semantic splits, then the full-task panoptic files of every split and the split instance
    JSONs (module docstring). A split's full-vocabulary step is done when its JSON exists (it is redone whole
    otherwise: its segments need every image decoded); the split versions resume file by file."""
    coco = os.path.join(root, "coco")
    for folder in COCO_FULL_SPLITS:  # inputs checked before any work
        for parts in (("annotations", f"panoptic_{folder}.json"), ("annotations", f"instances_{folder}.json"),
                      (f"panoptic_{folder}",)):  # fmt: skip
            if not os.path.exists(os.path.join(coco, *parts)):
                raise DatasetError(f"{os.path.join(coco, *parts)} not found; {_DOWNLOAD}")
    result = prepare_coco_stuff_open_vocab(root, workers, force, progress)
    if result.errors:
        return result
    split = open_vocab_split("coco_stuff_171")
    for folder in COCO_FULL_SPLITS:
        paths = {
            kind: {k: os.path.join(coco, *p) for k, p in coco_full_task_paths(folder, kind).items()}
            for kind in ("all",) + SPLIT_KINDS
        }
        full = paths["all"]
        if force or not os.path.isfile(full["panoptic_json"]):
            step = _full_task_all(coco, folder, full, split, workers, progress)
            result.add(step)
            if step.errors:
                continue
        outputs = {k: (paths[k]["panoptic_json"], paths[k]["panoptic_root"]) for k in SPLIT_KINDS}
        result.add(
            split_panoptic(full["panoptic_json"], full["panoptic_root"], outputs, split, workers, force, progress)
        )
        instances = {k: paths[k]["json_file"] for k in SPLIT_KINDS}
        result.add(split_instances(full["json_file"], instances, split, force, _DOWNLOAD))
    return result
