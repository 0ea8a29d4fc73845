"""Convert raw dataset masks into the training label convention (0..C-1 classes, 255 ignore), once, on disk.

Why convert at all when the loaders can reduce labels on the fly: the prepared folders are what detectron2-style
codebases (and the FreeMask configs) expect, and a uint8 lookup done once saves it on every epoch.

Shared by ``datasets/prepare_*.py``. Every conversion here is:
- parallel: a process pool over the files, chunked, with a tqdm bar;
- atomic: each mask is written to a hidden temporary file in the output folder, then ``os.replace``-d into place,
  so an interrupted run never leaves a half-written mask under its final name;
- idempotent: a file is skipped when its output is *current* (see ``output_is_current``), so re-running after an
  interruption only converts what is missing; ``force=True`` redoes everything (use it after replacing raw masks);
- read-only on its inputs.
"""

import functools
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from tqdm import tqdm

from .datasets.class_meta import read_meta_file
from .errors import DatasetError
from .mapper import read_mask, reduce_zero_label

IGNORE_LABEL = 255
ADE20K_NUM_CLASSES = 150
ADE20K_SPLITS = ("training", "validation")
COCO_STUFF_SPLITS = ("train2017", "val2017")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_TMP_SUFFIX = ".prepare-tmp"
# The converter of the current worker process, set once per process by the pool initializer (sending it with each
# chunk of files would pickle the lookup table thousands of times).
_CONVERTER: Optional[Callable[[np.ndarray, str], np.ndarray]] = None


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


def output_is_current(src: str, dst: str) -> bool:
    """True when ``dst`` is a complete 8-bit single-channel PNG with the same width and height as ``src``.

    Cheap on purpose (two small reads per file, no decoding), so a re-run over 160k masks takes seconds. It catches
    what an interrupted or crashed run can leave (a missing file, or a truncated one without its closing IEND chunk)
    and outputs of another tool in another format; it does not notice replaced raw masks — use ``force`` then.
    """
    out = _png_header(dst)
    if out is None:
        return False
    width, height, depth, colour_type, complete = out
    inp = _png_header(src)
    return complete and depth == 8 and colour_type == 0 and inp is not None and inp[:2] == (width, height)


def _write_png_atomic(path: str, mask: np.ndarray) -> None:
    ok, data = cv2.imencode(".png", mask)
    if not ok:
        raise DatasetError(f"{path}: could not encode the converted mask as PNG; check free disk space and retry")
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}{_TMP_SUFFIX}")
    try:
        data.tofile(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _init_worker(converter: Callable[[np.ndarray, str], np.ndarray]) -> None:
    global _CONVERTER
    _CONVERTER = converter


def _convert_one(pair: Tuple[str, str], force: bool) -> Tuple[str, str]:
    """("converted" | "skipped" | "error", message) for one (source, destination) pair."""
    src, dst = pair
    if not force and output_is_current(src, dst):
        return "skipped", ""
    try:
        _write_png_atomic(dst, _CONVERTER(read_mask(src), src))
    except (DatasetError, OSError) as e:
        return "error", str(e) if isinstance(e, DatasetError) else f"{dst}: cannot write ({e}); check permissions"
    return "converted", ""


def _remove_stale_tmp(folder: str) -> None:
    """Temporary files a killed run left behind (only ours: hidden and ending in ``.prepare-tmp``)."""
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(".") and entry.name.endswith(_TMP_SUFFIX):
                os.remove(entry.path)


def convert_masks(
    pairs: Sequence[Tuple[str, str]],
    converter: Callable[[np.ndarray, str], np.ndarray],
    workers: int = 0,
    force: bool = False,
    desc: str = "masks",
    progress: bool = True,
) -> PrepareResult:
    """Write ``converter(read_mask(src), src)`` to every ``dst`` of ``pairs``, skipping current outputs.

    ``converter`` maps an (H, W) stored mask to an (H, W) uint8 label map and must be picklable (a module-level
    function or a ``functools.partial`` of one); it raises DatasetError for a mask it cannot convert, which is
    collected rather than stopping the other files. ``workers`` <= 1 runs in this process.
    """
    result = PrepareResult()
    for folder in sorted({os.path.dirname(dst) for _, dst in pairs}):
        os.makedirs(folder, exist_ok=True)
        _remove_stale_tmp(folder)
    task = functools.partial(_convert_one, force=force)
    with tqdm(total=len(pairs), desc=desc, unit="file", disable=not progress) as bar:
        for status, message in _run(pairs, task, converter, workers):
            if status == "error":
                result.errors.append(message)
            else:
                setattr(result, status, getattr(result, status) + 1)
            bar.update()
    return result


def _run(pairs, task, converter, workers: int) -> Iterator[Tuple[str, str]]:
    if workers <= 1:
        _init_worker(converter)
        yield from map(task, pairs)
        return
    chunksize = max(1, min(256, len(pairs) // (workers * 16)))
    with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(converter,)) as pool:
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
