"""Stage-1 (prompt learning) records: one per (image, class present), from a label-count file; and their sampling.

FreeSeg's stage 1 classifies one ground-truth class mask at a time (bytedance/FreeSeg,
mask2former/data/datasets/utils.py, ``load_binary_mask``), so its datasets list every (image, class) pair of a
semantic split. Reading every mask to find its classes would
take minutes on COCO at each start; the preparation scripts write ``<mask folder>_label_count.json`` once
(``{mask file name: [class ids present]}``, freemask/data/prepare/open_vocab.py) and the records come from it.

Record::

    {"file_name": str, "sem_seg_file_name": str, "category_id": int (contiguous in the split),
     "reduce_zero_label": False}

FreeSeg's COCO stage 1 trains on its full-task base split (``load_full_binary_mask`` in
mask2former/data/datasets/register_coco_full.py), whose records also name the task whose prompt classifies them:
the semantic ones above (``"task": "sem_seg"``), then one per non-crowd thing segment (``"ins_seg"``) and one per
non-crowd segment (``"pan_seg"``) of the panoptic annotation::

    {"file_name": str, "pan_seg_file_name": str, "segments_info": [the image's segments], "segment_id": int,
     "category_id": int (contiguous in the split), "task": "ins_seg" | "pan_seg"}
"""

import json
import os
from collections import defaultdict
from typing import Dict, List, Sequence, Tuple

import numpy as np

from ..errors import DatasetError
from ..loading.listing_cache import list_files


def label_count_path(mask_dir: str) -> str:
    """``<mask_dir>_label_count.json`` (FreeSeg's name, beside the mask folder)."""
    return os.path.normpath(mask_dir) + "_label_count.json"


def _stems(folder: str, ext: str, what: str, hint: str) -> Dict[str, str]:
    if not os.path.isdir(folder):
        raise DatasetError(f"{what} folder not found: {folder}; {hint}")
    prefix = os.path.join(folder, "")
    return {name[: -len(ext)]: prefix + name for name in list_files(folder) if name.endswith(ext)}


def load_classification_records(
    image_root: str, sem_seg_root: str, num_classes: int, image_ext: str = ".jpg", hint: str = ""
) -> List[dict]:
    """Records (module docstring) of every (mask, class) in ``<sem_seg_root>_label_count.json``, sorted by mask name
    then class. DatasetError naming the file and ``hint`` (the command that writes it) when the label counts, a
    mask or its image are missing, or a class id is outside ``0..num_classes-1``."""
    hint = hint or "see datasets/README.md"
    path = label_count_path(sem_seg_root)
    if not os.path.isfile(path):
        raise DatasetError(f"label counts not found: {path}; write them with {hint}")
    try:
        with open(path, encoding="utf-8") as f:
            counts = json.load(f)
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path}: not a readable JSON file ({e}); write it again with {hint}") from None
    images = _stems(image_root, image_ext, "image", hint)
    masks = _stems(sem_seg_root, ".png", "mask", hint)
    records = []
    for name in sorted(counts):
        stem = os.path.splitext(name)[0]
        if stem not in masks or stem not in images:
            missing = os.path.join(sem_seg_root, name)
            if stem in masks:
                missing = os.path.join(image_root, stem + image_ext)
            raise DatasetError(f"{path} lists {name}, but {missing} does not exist; prepare the split again ({hint})")
        for category in counts[name]:
            if not 0 <= int(category) < num_classes:
                raise DatasetError(
                    f"{path}: {name} lists class {category}, not one of the split's {num_classes} classes; the label "
                    f"counts belong to another split — write them again ({hint})"
                )
            records.append(
                {
                    "file_name": images[stem],
                    "sem_seg_file_name": masks[stem],
                    "category_id": int(category),
                    "reduce_zero_label": False,
                }
            )
    if not records:
        raise DatasetError(f"{path}: no class is present in any mask; the split is empty — {hint}")
    return records


def full_task_classification_records(semantic: Sequence[dict], panoptic: Sequence[dict]) -> List[dict]:
    """FreeSeg's full-task stage-1 records (module docstring): ``semantic`` (from
    :func:`load_classification_records`) tagged ``sem_seg``, then the ``ins_seg`` and the ``pan_seg`` records of the
    panoptic records ``panoptic`` (``segments_info`` with contiguous ``category_id``, ``isthing``, ``iscrowd``)."""
    records = [dict(r, task="sem_seg") for r in semantic]
    for task, things_only in (("ins_seg", True), ("pan_seg", False)):
        for image in panoptic:
            for segment in image["segments_info"]:
                if segment.get("iscrowd", 0) or (things_only and not segment["isthing"]):
                    continue
                records.append(
                    {
                        "file_name": image["file_name"],
                        "pan_seg_file_name": image["pan_seg_file_name"],
                        "segments_info": image["segments_info"],
                        "segment_id": int(segment["id"]),
                        "category_id": int(segment["category_id"]),
                        "task": task,
                    }
                )
    return records


def sample_per_class(records: Sequence[dict], per_class: int, seed: int) -> List[dict]:
    """At most ``per_class`` records of each ``category_id`` (of each task and ``category_id`` where records name a
    task: FreeSeg's ``dataset_sample_per_task_class``), drawn without replacement by ``np.random.default_rng(seed)``
    group by group in increasing (task, id) order; the kept records stay in dataset order.

    FreeSeg's ``dataset_sample_per_class`` (train_net.py; ``DATASETS.SAMPLE_PER_CLASS`` / ``SAMPLE_SEED``) draws
    *with* replacement, so a class can repeat a sample while others of its samples go unused; we draw without. The
    result depends only on (records, per_class, seed), so every process of a distributed run selects the same set.
    """
    if per_class <= 0:
        return list(records)
    by_class: Dict[Tuple[str, int], List[int]] = defaultdict(list)
    for index, record in enumerate(records):
        by_class[(record.get("task", ""), int(record["category_id"]))].append(index)
    rng = np.random.default_rng(seed)
    chosen: List[int] = []
    for group in sorted(by_class):
        indices = by_class[group]
        if len(indices) > per_class:
            indices = rng.choice(indices, size=per_class, replace=False).tolist()
        chosen.extend(indices)
    return [records[i] for i in sorted(chosen)]
