"""Seen/unseen (``_base`` / ``_novel``) annotations of any dataset, written once by the same code for every family.

What bytedance/FreeSeg's ``datasets/prepare_*_novel.py`` / ``datasets/prepare_coco_alldata.py`` /
``datasets/prepare_voc_sem_seg.py`` and ``tools/mask_cls_collect.py`` write, by our own code and without their two
bugs: their multi-process paths update results inside worker processes that never reach the parent (panoptic
``segments_info`` kept as the input's; VOC ``val_base`` never written). Here every result a worker computes is
*returned* to the parent (:func:`parallel_map`), and only the parent writes JSON files.

- Semantic maps: each label is mapped through ``source`` (how the stored values read: contiguous or zero-reduced)
  and then into the split's ids; classes of the other split and unlabeled pixels become 255. Every file is written,
  also when it is all 255 (FreeSeg skips those): an image then keeps its mask in every split, so a split lists the
  same images as its dataset, a missing file always means an interrupted preparation (which the loaders and the
  resume check rely on), and the seen/unseen evaluation of a ``_base`` / ``_novel`` test split still sees every image.
- Panoptic PNG + JSON: segments of the other split's classes become void (id 0); kept segments keep their id, area,
  bbox and *dataset* category id (what panopticapi compares), and the JSON's ``categories`` list only the split's
  classes, so the loader's contiguous ids are the split's 0..S-1.
- Instance JSON: annotations of the split's classes, its categories; every image kept.
- Label counts ``<mask folder>_label_count.json``: ``{file name: [class ids present]}`` (255 excluded), counted once
  on the full maps and mapped into each split, for stage 1 (one record per image and class).

All writes are atomic (temporary file + rename), inputs are only read, and a re-run skips finished outputs (a
complete PNG of the input's size; a JSON file that exists; label counts listing exactly the folder's files).
"""

import functools
import os
import shutil
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np
from tqdm import tqdm

from ...utils.atomic import atomic_path, atomic_write_json
from ...utils.worker_pool import process_pool
from ..datasets.classification import label_count_path
from ..datasets.open_vocab import OpenVocabSplit
from ..datasets.panoptic import read_json
from ..datasets.sem_seg import IGNORE_LABEL
from ..errors import DatasetError
from ..mappers.semantic import read_mask
from ..panoptic_png import id2rgb, read_panoptic_png
from .sem_seg import PrepareResult, convert_masks, folder_pairs, output_is_current, write_png_atomic

INVALID = -1  # in a source table: a stored value the dataset never uses (an error, not a silent ignore)


# ------------------------------------------------------------------------------------------------------ helpers
def parallel_map(fn: Callable[[Any], Any], items: Sequence[Any], workers: int, desc: str, progress: bool) -> Iterator:
    """``fn(item)`` for every item, in order, with a progress bar; a process pool when ``workers`` > 1. Results come
    back to the caller (never kept in a worker), so nothing a worker computes is lost."""
    with tqdm(total=len(items), desc=desc, unit="file", disable=not progress) as bar:
        if workers <= 1:
            for item in items:
                yield fn(item)
                bar.update()
            return
        chunksize = max(1, min(64, len(items) // (workers * 16)))
        with process_pool(workers) as pool:
            for out in pool.map(fn, items, chunksize=chunksize):
                yield out
                bar.update()


def _tally(result: PrepareResult, statuses: Iterable[Tuple[str, str]]) -> PrepareResult:
    for status, message in statuses:
        if status == "error":
            result.errors.append(message)
        else:
            setattr(result, status, getattr(result, status) + 1)
    return result


# --------------------------------------------------------------------------------------------------- semantic
def contiguous_source(num_classes: int) -> np.ndarray:
    """Source table of prepared maps: 0..K-1 are the classes, 255 ignore, any other value invalid."""
    table = np.full(256, INVALID, np.int64)
    table[:num_classes] = np.arange(num_classes)
    table[IGNORE_LABEL] = IGNORE_LABEL
    return table


def zero_reduced_source(num_classes: int) -> np.ndarray:
    """Source table of raw ADE-convention maps (VOC's SegmentationClassAug too): 0 = unlabeled -> ignore, class k
    stored as k + 1, 255 (VOC's object boundaries) ignore, any other value invalid."""
    table = np.full(256, INVALID, np.int64)
    table[1 : num_classes + 1] = np.arange(num_classes)
    table[[0, IGNORE_LABEL]] = IGNORE_LABEL
    return table


def kind_lut(split: OpenVocabSplit, kind: str, source: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(uint8 (256,) stored value -> label of ``kind``, uint8 (256,) 1 where the stored value is invalid)."""
    classes = (source >= 0) & (source != IGNORE_LABEL)
    lut = np.full(256, IGNORE_LABEL, np.uint8)
    lut[classes] = split.to_kind(kind)[source[classes]]
    return lut, (source == INVALID).astype(np.uint8)


def relabel(
    mask: np.ndarray, path: str = "", lut: Optional[np.ndarray] = None, invalid: Optional[np.ndarray] = None
) -> np.ndarray:
    """``lut[mask]`` for an 8-bit label map; DatasetError naming ``path`` when it holds a value the dataset never
    uses (a map of another dataset, or one already converted)."""
    if mask.dtype != np.uint8:
        raise DatasetError(f"{path}: {mask.dtype} label map, expected 8-bit PNG labels; re-extract the annotations")
    if cv2.LUT(mask, invalid).any():
        bad = sorted(set(np.unique(mask).tolist()) & set(np.flatnonzero(invalid).tolist()))
        raise DatasetError(
            f"{path}: label values {bad[:5]} are not labels of this dataset; check that the folder holds the "
            "dataset's original annotations"
        )
    return cv2.LUT(mask, lut)


def split_semantic_maps(
    sources: Sequence[str],
    out_dirs: Mapping[str, str],
    split: OpenVocabSplit,
    source: np.ndarray,
    workers: int = 0,
    force: bool = False,
    progress: bool = True,
    desc: str = "masks",
) -> PrepareResult:
    """Write each source map, re-labelled to every kind of ``out_dirs`` (kind -> folder), under its own name."""
    result = PrepareResult()
    for kind, out_dir in out_dirs.items():
        lut, invalid = kind_lut(split, kind, source)
        pairs = [(src, os.path.join(out_dir, os.path.basename(src))) for src in sources]
        converter = functools.partial(relabel, lut=lut, invalid=invalid)
        result.add(convert_masks(pairs, converter, workers, force, f"{desc} {kind}", progress))
    return result


# ----------------------------------------------------------------------------------------------- label counts
def present_labels(path: str) -> List[int]:
    """The label values of a map, ignore (255) excluded, increasing."""
    mask = read_mask(path)
    if mask.dtype == np.uint8:
        counts = cv2.calcHist([mask], [0], None, [256], [0, 256]).ravel()
        values = np.flatnonzero(counts)
    else:
        values = np.unique(mask)
    return [int(v) for v in values if v != IGNORE_LABEL]


def write_label_counts(
    all_dir: str,
    split: OpenVocabSplit,
    derived: Mapping[str, str],
    workers: int = 0,
    force: bool = False,
    progress: bool = True,
) -> PrepareResult:
    """Label counts of ``all_dir`` (full-vocabulary maps) and of each ``derived`` kind's folder (kind -> folder),
    the latter mapped from the former: the derived maps are the same maps re-labelled, so no file is read twice."""
    names = [os.path.basename(src) for src, _ in folder_pairs(all_dir, all_dir)]
    outputs = {"all": label_count_path(all_dir), **{k: label_count_path(d) for k, d in derived.items()}}
    if not force and all(os.path.isfile(p) for p in outputs.values()):
        if all(set(read_json(p, "re-run the preparation")) == set(names) for p in outputs.values()):
            return PrepareResult(skipped=len(names))
    paths = [os.path.join(all_dir, n) for n in names]
    counts = dict(zip(names, parallel_map(present_labels, paths, workers, f"label counts {all_dir}", progress)))
    num_classes = len(split.categories.ids)
    for name, labels in counts.items():
        if labels and labels[-1] >= num_classes:
            raise DatasetError(
                f"{os.path.join(all_dir, name)}: label {labels[-1]} is not one of the {num_classes} classes; "
                "re-run the preparation with --force"
            )
    for kind, path in outputs.items():
        table = split.to_kind(kind)
        kept = {n: [int(table[c]) for c in cs if table[c] != IGNORE_LABEL] for n, cs in counts.items()}
        atomic_write_json(path, kept, indent=None, final_newline=False)
    return PrepareResult(converted=len(names))


# --------------------------------------------------------------------------------------------------- panoptic
def _split_png(job: Tuple[str, str, Tuple[int, ...], Tuple[int, ...], bool]) -> Tuple[str, str]:
    """One panoptic PNG with the ``removed`` segment ids set to void; a byte copy when nothing is removed."""
    src, dst, segment_ids, removed, force = job
    if not force and output_is_current(src, dst, colour_type=2):
        return "skipped", ""
    try:
        if not removed:
            with atomic_path(dst) as tmp:
                shutil.copyfile(src, tmp)
        else:
            ids = read_panoptic_png(src, [{"id": i} for i in segment_ids])
            ids[np.isin(ids, removed)] = 0
            write_png_atomic(dst, id2rgb(ids)[..., ::-1])
    except DatasetError as e:
        return "error", str(e)
    except OSError as e:
        return "error", f"{dst}: cannot write ({e}); check permissions and free space"
    return "converted", ""


def json_categories(split: OpenVocabSplit, kind: str) -> List[Dict[str, Any]]:
    """COCO-panoptic ``categories`` of a kind: dataset id, name, isthing, colour."""
    c = split.categories_of(kind)
    return [
        {"id": i, "name": n, "isthing": int(t), "color": list(col)}
        for i, n, t, col in zip(c.ids, c.names, c.isthing, c.colors)
    ]


def split_panoptic(
    json_in: str,
    png_root: str,
    outputs: Mapping[str, Tuple[str, str]],
    split: OpenVocabSplit,
    workers: int = 0,
    force: bool = False,
    progress: bool = True,
    hint: str = "see datasets/README.md",
) -> PrepareResult:
    """A COCO panoptic JSON + PNG folder -> one (JSON, PNG folder) per kind of ``outputs``; a kind whose JSON exists
    is done (the JSON is written last) unless ``force``."""
    data = read_json(json_in, hint)
    known = set(split.categories.ids)
    for ann in data["annotations"]:
        for seg in ann["segments_info"]:
            if seg["category_id"] not in known:
                raise DatasetError(
                    f"{json_in}: segment {seg['id']} of {ann['file_name']} has category_id {seg['category_id']}, "
                    f"not one of the {len(known)} categories of {split.name}; the JSON belongs to another dataset"
                )
    result = PrepareResult()
    for kind, (json_out, png_out) in outputs.items():
        if not force and os.path.isfile(json_out):
            result.skipped += len(data["annotations"])
            continue
        keep = set(split.categories_of(kind).ids)
        os.makedirs(png_out, exist_ok=True)
        jobs, annotations = [], []
        for ann in data["annotations"]:
            segments = ann["segments_info"]
            removed = tuple(int(s["id"]) for s in segments if s["category_id"] not in keep)
            src, dst = os.path.join(png_root, ann["file_name"]), os.path.join(png_out, ann["file_name"])
            jobs.append((src, dst, tuple(int(s["id"]) for s in segments), removed, force))
            annotations.append({**ann, "segments_info": [s for s in segments if s["category_id"] in keep]})
        errors = len(result.errors)
        desc = f"panoptic {kind} {os.path.basename(json_in)}"
        _tally(result, parallel_map(_split_png, jobs, workers, desc, progress))
        if len(result.errors) == errors:  # a failed PNG leaves the JSON unwritten: the kind is redone next time
            out = {**data, "annotations": annotations, "categories": json_categories(split, kind)}
            atomic_write_json(json_out, out, indent=None, final_newline=False)
    return result


def split_instances(
    json_in: str, outputs: Mapping[str, str], split: OpenVocabSplit, force: bool = False, hint: str = ""
) -> PrepareResult:
    """A COCO instance JSON -> one JSON per kind of ``outputs`` with the annotations and categories of the kind's
    (thing) classes and every image."""
    if not force and all(os.path.isfile(p) for p in outputs.values()):
        return PrepareResult(skipped=len(outputs))
    data = read_json(json_in, hint or "see datasets/README.md")
    for kind, json_out in outputs.items():
        keep = set(split.categories_of(kind).ids)
        atomic_write_json(
            json_out,
            {
                **data,
                "annotations": [a for a in data["annotations"] if a["category_id"] in keep],
                "categories": [c for c in data["categories"] if c["id"] in keep],
            },
            indent=None,
            final_newline=False,
        )
    return PrepareResult(converted=len(outputs))
