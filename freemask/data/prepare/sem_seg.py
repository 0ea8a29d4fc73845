"""Convert raw dataset masks into the training label convention (0..C-1 classes, 255 ignore), once, on disk.

Why convert at all when the loaders can reduce labels on the fly: the prepared folders are what detectron2-style
codebases (and the FreeMask configs) expect, and a uint8 lookup done once saves it on every epoch.

Shared by ``datasets/prepare_*.py``. Every conversion here is:
- parallel: a process pool over the files, chunked, with a tqdm bar; the workers die with the command
  (``freemask.utils.worker_pool``), so a killed run stops writing at once;
- atomic: each mask is written through ``freemask.utils.atomic`` (a hidden temporary file in the output folder,
  then renamed), so an interrupted run never leaves a half-written mask under its final name, and the temporaries
  of killed runs are removed when the next one starts;
- idempotent: a file is skipped when its output is *current* (see ``output_is_current``), so re-running after an
  interruption only converts what is missing; ``force=True`` redoes everything (use it after replacing raw masks);
- read-only on its inputs.
"""

import functools
import os
import sys
from dataclasses import dataclass, field
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from tqdm import tqdm

from ...utils.atomic import atomic_write_bytes, remove_stale_temporaries
from ...utils.worker_pool import process_pool
from ..datasets.class_meta import read_meta_file
from ..datasets.sem_seg import IGNORE_LABEL
from ..errors import DatasetError
from ..mappers.semantic import read_mask, reduce_zero_label

ADE20K_NUM_CLASSES = 150
ADE20K_SPLITS = ("training", "validation")
COCO_STUFF_SPLITS = ("train2017", "val2017")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
# The converter (and the reader of raw masks) of the current worker process, set once per process by the pool
# initializer (sending it with each chunk of files would pickle the lookup table thousands of times).
_CONVERTER: Optional[Callable[[np.ndarray, str], np.ndarray]] = None
_READER: Callable[[str], np.ndarray] = read_mask


@dataclass
class PrepareResult:
    """Counts of one run; ``errors`` holds one line per file that could not be converted."""

    converted: int = 0
    skipped: int = 0
    errors: List[str] = field(default_factory=list)

    def add(self, other: "PrepareResult") -> None:
        self.converted += other.converted
        self.skipped += other.skipped
        self.errors.extend(other.errors)

    def report(self, shown: int = 10) -> int:
        """Print the counts (stdout) and the first ``shown`` errors (stderr); the exit status, 1 if a file failed."""
        print(f"converted {self.converted}, already done {self.skipped}, failed {len(self.errors)}")
        for line in self.errors[:shown]:
            print(f"  {line}", file=sys.stderr)
        if len(self.errors) > shown:
            print(f"  ... and {len(self.errors) - shown} more", file=sys.stderr)
        return 1 if self.errors else 0


def _png_header(path: str) -> Optional[Tuple[int, int, int, int, bool]]:
    """(width, height, bit depth, colour type, ends with IEND) from the first 33 and last 12 bytes; None if not PNG."""
    try:
        with open(path, "rb") as f:
            head = f.read(33)
            f.seek(0, os.SEEK_END)
            f.seek(max(f.tell() - 12, 0))
            tail = f.read(12)
    except OSError:
        return None
    if len(head) < 33 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
        return None
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    return width, height, head[24], head[25], tail == _PNG_IEND


def output_is_current(src: str, dst: str, colour_type: int = 0) -> bool:
    """True when ``dst`` is a complete 8-bit PNG of ``colour_type`` (0 grey, 2 RGB: a panoptic PNG) with the same
    width and height as ``src``.

    Cheap on purpose (two small reads per file, no decoding), so a re-run over 160k masks takes seconds. It catches
    what an interrupted or crashed run can leave (a missing file, or a truncated one without its closing IEND chunk)
    and outputs of another tool in another format; it does not notice replaced raw masks — use ``force`` then.
    A source that is not a PNG (COCO-Stuff-10k's .mat files) has no cheap size, so the output must be newer instead.
    """
    out = _png_header(dst)
    if out is None:
        return False
    width, height, depth, _, complete = out
    if not (complete and depth == 8 and out[3] == colour_type):
        return False
    if not src.lower().endswith(".png"):
        return os.path.getmtime(dst) >= os.path.getmtime(src)
    inp = _png_header(src)
    return inp is not None and inp[:2] == (width, height)


def write_png_atomic(path: str, mask: np.ndarray) -> None:
    """Encode ``mask`` (an (H, W) label map, or (H, W, 3) BGR) as PNG into ``path`` through a hidden temporary file
    and a rename, so an interrupted run never leaves a half-written file under the final name."""
    ok, data = cv2.imencode(".png", mask)
    if not ok:
        raise DatasetError(f"{path}: could not encode the converted mask as PNG; check free disk space and retry")
    atomic_write_bytes(path, data.tobytes())


def _init_worker(
    converter: Callable[[np.ndarray, str], np.ndarray], reader: Callable[[str], np.ndarray] = read_mask
) -> None:
    global _CONVERTER, _READER
    _CONVERTER, _READER = converter, reader


def _convert_one(pair: Tuple[str, str], force: bool) -> Tuple[str, str]:
    """("converted" | "skipped" | "error", message) for one (source, destination) pair."""
    src, dst = pair
    if not force and output_is_current(src, dst):
        return "skipped", ""
    try:
        write_png_atomic(dst, _CONVERTER(_READER(src), src))
    except (DatasetError, OSError) as e:
        return "error", str(e) if isinstance(e, DatasetError) else f"{dst}: cannot write ({e}); check permissions"
    return "converted", ""


def convert_masks(
    pairs: Sequence[Tuple[str, str]],
    converter: Callable[[np.ndarray, str], np.ndarray],
    workers: int = 0,
    force: bool = False,
    desc: str = "masks",
    progress: bool = True,
    reader: Callable[[str], np.ndarray] = read_mask,
) -> PrepareResult:
    """Write ``converter(reader(src), src)`` to every ``dst`` of ``pairs``, skipping current outputs.

    ``converter`` maps an (H, W) stored mask to an (H, W) uint8 label map and must be picklable (a module-level
    function or a ``functools.partial`` of one); it raises DatasetError for a mask it cannot convert, which is
    collected rather than stopping the other files. ``workers`` <= 1 runs in this process. ``reader`` (picklable
    too) reads a raw mask; the default reads image files.
    """
    result = PrepareResult()
    for folder in sorted({os.path.dirname(dst) for _, dst in pairs}):
        os.makedirs(folder, exist_ok=True)
        remove_stale_temporaries(folder)
    task = functools.partial(_convert_one, force=force)
    with tqdm(total=len(pairs), desc=desc, unit="file", disable=not progress) as bar:
        for status, message in _run(pairs, task, (converter, reader), workers):
            if status == "error":
                result.errors.append(message)
            else:
                setattr(result, status, getattr(result, status) + 1)
            bar.update()
    return result


def _run(pairs, task, worker_args: tuple, workers: int) -> Iterator[Tuple[str, str]]:
    if workers <= 1:
        _init_worker(*worker_args)
        yield from map(task, pairs)
        return
    chunksize = max(1, min(256, len(pairs) // (workers * 16)))
    with process_pool(workers, initializer=_init_worker, initargs=worker_args) as pool:
        yield from pool.map(task, pairs, chunksize=chunksize)


def folder_pairs(src_dir: str, dst_dir: str, ext: str = ".png") -> List[Tuple[str, str]]:
    """(source, destination) for every ``*ext`` file of ``src_dir``, sorted; DatasetError if the folder is missing."""
    if not os.path.isdir(src_dir):
        raise DatasetError(
            f"raw mask folder not found: {src_dir}; download and extract the dataset there (see datasets/README.md) "
            f"or pass --root"
        )
    with os.scandir(src_dir) as entries:
        names = sorted(e.name for e in entries if e.name.endswith(ext) and not e.name.startswith(".") and e.is_file())
    return [(os.path.join(src_dir, n), os.path.join(dst_dir, n)) for n in names]


def _split_pairs(base: str, raw: str, prepared: str, splits: Sequence[str]) -> List[Tuple[str, List[Tuple[str, str]]]]:
    """(split, pairs) of every split, all listed before any conversion so a missing split fails before any work."""
    return [(s, folder_pairs(os.path.join(base, raw, s), os.path.join(base, prepared, s))) for s in splits]


# ---- ADE20K ---------------------------------------------------------------------------------------------------------


def convert_ade20k_mask(mask: np.ndarray, path: str = "") -> np.ndarray:
    """Raw ADE20K (H, W) labels 0..150 -> uint8 0..149 with 0 -> 255; DatasetError on a value above 150, which
    means the folder is not raw ADE20K annotations (already prepared ones contain 255)."""
    top = int(mask.max(initial=0))
    if top > ADE20K_NUM_CLASSES:
        raise DatasetError(
            f"{path}: label {top} above {ADE20K_NUM_CLASSES}; expected raw ADE20K annotations (0..150) from "
            f"ADEChallengeData2016/annotations — already-prepared masks need no conversion"
        )
    return reduce_zero_label(mask, IGNORE_LABEL).astype(np.uint8, copy=False)


def prepare_ade20k(root: str, workers: int = 0, force: bool = False, progress: bool = True) -> PrepareResult:
    """``<root>/ADEChallengeData2016/annotations/{training,validation}`` -> ``annotations_detectron2/<split>``."""
    base = os.path.join(root, "ADEChallengeData2016")
    splits = _split_pairs(base, "annotations", "annotations_detectron2", ADE20K_SPLITS)
    result = PrepareResult()
    for split, pairs in splits:
        result.add(convert_masks(pairs, convert_ade20k_mask, workers, force, f"ADE20K {split}", progress))
    return result


# ---- COCO-Stuff-164K ------------------------------------------------------------------------------------------------


def load_coco_stuff_ids() -> List[int]:
    """The 171 used COCO-Stuff ids (1-based) from the packaged ``meta/coco_stuff_171.json``, validated."""
    ids = read_meta_file("coco_stuff_171.json")["coco_ids"]
    check_coco_stuff_ids(ids)
    return ids


def check_coco_stuff_ids(ids: Sequence[int]) -> None:
    """80 distinct thing ids in 1..90 then 91 distinct stuff ids in 92..182, increasing (the class order)."""
    things, stuff = [i for i in ids if 1 <= i <= 90], [i for i in ids if 92 <= i <= 182]
    if len(things) != 80 or len(stuff) != 91 or len(ids) != 171 or list(ids) != sorted(set(ids)):
        raise ValueError(
            f"COCO-Stuff ids must be 80 increasing thing ids in 1..90 and 91 stuff ids in 92..182, got "
            f"{len(things)} thing and {len(stuff)} stuff ids out of {len(ids)}; fix meta/coco_stuff_171.json"
        )


def coco_stuff_lut(ids: Sequence[int]) -> np.ndarray:
    """uint8 (256,) table: stored value ``id - 1`` -> class index (position of ``id`` in ``ids``), else 255."""
    lut = np.full(256, IGNORE_LABEL, dtype=np.uint8)
    lut[np.asarray(ids, dtype=np.int64) - 1] = np.arange(len(ids), dtype=np.uint8)
    return lut


def apply_lut(mask: np.ndarray, path: str = "", lut: Optional[np.ndarray] = None) -> np.ndarray:
    """``lut[mask]`` for a uint8 (H, W) mask; DatasetError for wider masks (COCO-Stuff maps are 8-bit)."""
    if mask.dtype != np.uint8:
        raise DatasetError(f"{path}: {mask.dtype} mask, expected 8-bit stuffthingmaps PNGs; re-extract the archive")
    return cv2.LUT(mask, lut)


def prepare_coco_stuff(
    root: str, workers: int = 0, force: bool = False, progress: bool = True, ids: Optional[Sequence[int]] = None
) -> PrepareResult:
    """``<root>/coco/stuffthingmaps_trainval2017/<split>`` -> ``stuffthingmaps_detectron2/<split>`` (0..170, 255).

    ``ids`` defaults to the packaged 171 ids (tests pass their own)."""
    base = os.path.join(root, "coco")
    splits = _split_pairs(base, "stuffthingmaps_trainval2017", "stuffthingmaps_detectron2", COCO_STUFF_SPLITS)
    if ids is None:
        ids = load_coco_stuff_ids()
    else:
        check_coco_stuff_ids(ids)
    converter = functools.partial(apply_lut, lut=coco_stuff_lut(ids))
    result = PrepareResult()
    for split, pairs in splits:
        result.add(convert_masks(pairs, converter, workers, force, f"COCO-Stuff {split}", progress))
    return result


# ---- Cityscapes -----------------------------------------------------------------------------------------------------

CITYSCAPES_SPLITS = ("train", "val")
CITYSCAPES_LABEL_IDS = "_gtFine_labelIds.png"
CITYSCAPES_TRAIN_IDS = "_gtFine_labelTrainIds.png"


def cityscapes_lut() -> np.ndarray:
    """uint8 (256,) table: Cityscapes label id -> train id 0..18 (``meta/cityscapes_19.json``), every other id 255."""
    lut = np.full(256, IGNORE_LABEL, dtype=np.uint8)
    ids = read_meta_file("cityscapes_19.json")["label_ids"]
    lut[np.asarray(ids, dtype=np.int64)] = np.arange(len(ids), dtype=np.uint8)
    return lut


def prepare_cityscapes(root: str, workers: int = 0, force: bool = False, progress: bool = True) -> PrepareResult:
    """``<root>/cityscapes/gtFine/<split>/<city>/*_gtFine_labelIds.png`` -> ``*_gtFine_labelTrainIds.png`` beside them
    (the names cityscapesScripts' ``createTrainIdLabelImgs`` writes, so either tool's output serves)."""
    splits = []
    for split in CITYSCAPES_SPLITS:
        folder = os.path.join(root, "cityscapes", "gtFine", split)
        if not os.path.isdir(folder):
            raise DatasetError(
                f"Cityscapes labels not found: {folder} does not exist; unzip gtFine_trainvaltest.zip under "
                f"{os.path.join(root, 'cityscapes')} (see datasets/README.md) or pass --root"
            )
        pairs = []
        for city in sorted(os.listdir(folder)):
            for src, _ in folder_pairs(os.path.join(folder, city), os.path.join(folder, city), CITYSCAPES_LABEL_IDS):
                pairs.append((src, src[: -len(CITYSCAPES_LABEL_IDS)] + CITYSCAPES_TRAIN_IDS))
        splits.append((split, pairs))
    converter = functools.partial(apply_lut, lut=cityscapes_lut())
    result = PrepareResult()
    for split, pairs in splits:
        result.add(convert_masks(pairs, converter, workers, force, f"Cityscapes {split}", progress))
    return result


# ---- COCO-Stuff-10k -------------------------------------------------------------------------------------------------

COCO_STUFF_10K_SPLITS = ("train", "test")


def read_coco_stuff_10k_mat(path: str) -> np.ndarray:
    """The label map ``S`` (H, W) of an official COCO-Stuff-10k ``annotations/*.mat`` (0 = unlabeled, COCO ids)."""
    from scipy.io import loadmat  # only this conversion needs scipy

    try:
        labels = loadmat(path)["S"]
    except (OSError, ValueError, KeyError) as e:
        raise DatasetError(f"{path}: not a COCO-Stuff-10k annotation with a label map S ({e}); re-extract it") from None
    if labels.ndim != 2:
        raise DatasetError(f"{path}: label map S has shape {labels.shape}, expected (H, W); re-extract the archive")
    return labels


def coco_stuff_10k_labels(labels: np.ndarray, path: str = "", lut: Optional[np.ndarray] = None) -> np.ndarray:
    """COCO ids (0 = unlabeled, 1..182) -> class 0..170 through ``lut`` (unused ids and 0 -> 255)."""
    top = int(labels.max(initial=0))
    if top > 182:
        raise DatasetError(f"{path}: label {top} above 182; expected COCO-Stuff ids in cocostuff-10k-v1.1 annotations")
    return lut[labels.astype(np.int64)]


def prepare_coco_stuff_10k(root: str, workers: int = 0, force: bool = False, progress: bool = True) -> PrepareResult:
    """``<root>/coco_stuff_10k/annotations/<name>.mat`` of ``imageLists/<split>.txt`` ->
    ``annotations_detectron2/<split>/<name>.png`` (0..170, 255), for train (9k) and test (1k)."""
    base = os.path.join(root, "coco_stuff_10k")
    lut = np.full(256, IGNORE_LABEL, dtype=np.uint8)
    lut[np.asarray(load_coco_stuff_ids(), dtype=np.int64)] = np.arange(171, dtype=np.uint8)
    splits = []
    for split in COCO_STUFF_10K_SPLITS:
        names = read_image_list(base, split)
        src = os.path.join(base, "annotations")
        dst = os.path.join(base, "annotations_detectron2", split)
        splits.append((split, [(os.path.join(src, f"{n}.mat"), os.path.join(dst, f"{n}.png")) for n in names]))
    missing = [s for _, pairs in splits for s, _ in pairs if not os.path.isfile(s)]
    if missing:
        raise DatasetError(
            f"{len(missing)} COCO-Stuff-10k annotations listed in imageLists/ are missing (first: {missing[0]}); "
            "re-extract cocostuff-10k-v1.1.zip"
        )
    converter = functools.partial(coco_stuff_10k_labels, lut=lut)
    result = PrepareResult()
    for split, pairs in splits:
        desc = f"COCO-Stuff-10k {split}"
        result.add(convert_masks(pairs, converter, workers, force, desc, progress, reader=read_coco_stuff_10k_mat))
    return result


def read_image_list(base: str, split: str) -> List[str]:
    """Image names (no extension) of ``<base>/imageLists/<split>.txt``, one per line, blank lines skipped."""
    path = os.path.join(base, "imageLists", f"{split}.txt")
    if not os.path.isfile(path):
        raise DatasetError(
            f"COCO-Stuff-10k image list not found: {path}; unzip cocostuff-10k-v1.1.zip into {base} (see "
            "datasets/README.md) or pass --root"
        )
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]
