"""Hardness of a real mask: how hard its classes are for a model trained on the real set.

FreeMask's re-sampling gives the masks a real-trained model finds hard more synthetic copies. The hardness of a mask
is the pixel-weighted average of the class-wise mean losses ``L_c`` (``class_loss.json``) over its labelled pixels,
counted on the mask resized to 512x512 with nearest-neighbour sampling, as the release's ``preprocess/resample.py``
does (so a large mask weighs no more than a small one, and the numbers match the release's).

Conventions:

- Pixels with the ignore label (and label 0 of raw ADE-style masks, ``reduce_zero_label``) are left out.
- A class whose mean loss is unknown (NaN: no pixel of it in the real set the losses came from) is left out like an
  ignored pixel: nothing is known about how hard it is, and guessing 0 would make its masks look easy.
- A mask with no counted pixel has hardness 0 (the release's ``0 / (0 + 1e-5)``): it ranks among the easiest.
  The release divides by ``pixels + 1e-5``; we divide by the exact count, which changes values by a relative 1e-5 /
  pixels at most and the order only between masks that tie to that precision.
"""

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from ...data.errors import DatasetError
from ...data.mappers.semantic import read_mask

HARDNESS_SIZE = 512
_SHOWN_LABELS = 5
# Masks per thread-pool task: large enough to amortise scheduling, small enough for a smooth progress bar.
_CHUNK = 64


def resize_nearest(mask: np.ndarray, size: int = HARDNESS_SIZE) -> np.ndarray:
    """``(size, size)`` nearest-neighbour resize sampling source pixel ``floor((i + 0.5) * H / size)``, which is
    Pillow's ``Image.NEAREST`` (what the release used); OpenCV's INTER_NEAREST_EXACT computes the same indices,
    whereas its plain INTER_NEAREST samples ``floor(i * H / size)`` and would shift which pixels are counted."""
    return cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST_EXACT)


def label_histogram(mask: np.ndarray) -> np.ndarray:
    """int64 counts of every stored value of an integer label map (length max value + 1, at least 256)."""
    if mask.dtype == np.uint8 and mask.size < 2**24:
        # calcHist is ~3x faster than bincount on uint8 and releases the GIL; float32 counts are exact below 2**24.
        return cv2.calcHist([mask], [0], None, [256], [0, 256]).reshape(-1).astype(np.int64)
    return np.bincount(mask.reshape(-1), minlength=256).astype(np.int64, copy=False)


def class_pixel_counts(
    histogram: np.ndarray, num_classes: int, ignore_label: int, reduce_zero_label: bool
) -> tuple[np.ndarray, np.ndarray]:
    """``((K,) pixels per training label, stored values outside the label space)`` of one mask's histogram.

    ``reduce_zero_label`` reads raw ADE-style masks (0 = unlabeled, class k stored as k + 1) on the counts rather than
    the pixels: stored 0 and ``ignore_label`` are ignored, stored ``k + 1`` counts for label ``k``."""
    offset = 1 if reduce_zero_label else 0
    counts = np.zeros(num_classes, dtype=np.int64)
    stored = histogram[offset : offset + num_classes]
    counts[: len(stored)] = stored
    if offset <= ignore_label < offset + num_classes:  # an ignore label inside the label range is never a class
        counts[ignore_label - offset] = 0
    values = np.flatnonzero(histogram)
    unexpected = values[(values >= offset + num_classes) & (values != ignore_label)]
    return counts, unexpected


def hardness_from_counts(counts: np.ndarray, mean_loss: np.ndarray) -> np.ndarray:
    """Hardness of masks given their ``(..., K)`` class pixel counts and the ``(K,)`` mean losses (NaN = unknown).

    Pixel-weighted average of the known means; 0 where no pixel has a known mean (see the module docstring)."""
    known = np.isfinite(mean_loss)
    weights = np.where(known, mean_loss, 0.0)
    counted = counts @ known.astype(np.float64)
    total = counts @ weights
    return np.divide(total, counted, out=np.zeros_like(total, dtype=np.float64), where=counted > 0)


def mask_hardness(path: str, mean_loss: np.ndarray, ignore_label: int = 255, reduce_zero_label: bool = False) -> float:
    """Hardness of the mask file ``path`` (see the module docstring); DatasetError naming the file for an unreadable
    mask or a stored label outside the class-loss file's label space."""
    mask = read_mask(path)
    counts, unexpected = class_pixel_counts(
        label_histogram(resize_nearest(mask)), len(mean_loss), ignore_label, reduce_zero_label
    )
    if unexpected.size:
        shown = ", ".join(str(v) for v in unexpected[:_SHOWN_LABELS]) + (
            ", ..." if unexpected.size > _SHOWN_LABELS else ""
        )
        convention = "raw, 0 = unlabeled and class k stored as k + 1" if reduce_zero_label else "0..K-1"
        hint = (
            "; raw ADE20K masks? pass --reduce-zero-label"
            if not reduce_zero_label and unexpected.max() == len(mean_loss)
            else ""
        )
        raise DatasetError(
            f"{path}: stored labels {shown} are outside the {len(mean_loss)} classes of the class-loss file "
            f"(read as {convention}, ignore {ignore_label}){hint}; use the class-loss file of this dataset and "
            f"the masks' label convention"
        )
    return float(hardness_from_counts(counts, mean_loss))


def compute_hardness(
    paths: Sequence[str],
    mean_loss: np.ndarray,
    ignore_label: int = 255,
    reduce_zero_label: bool = False,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """``(N,)`` float64 hardness of the mask files ``paths``, read by ``workers`` threads.

    Threads suffice: decoding, resizing and the histogram run in OpenCV, which releases the GIL, so there is no
    pickling or process start-up. ``progress(n)`` is called as masks finish. The first bad mask stops the run with
    its DatasetError (the remaining ones are not read)."""
    mean_loss = np.asarray(mean_loss, dtype=np.float64)
    chunks = [paths[i : i + _CHUNK] for i in range(0, len(paths), _CHUNK)]

    def chunk_hardness(chunk: Sequence[str]) -> np.ndarray:
        return np.array([mask_hardness(p, mean_loss, ignore_label, reduce_zero_label) for p in chunk], np.float64)

    results = []
    if workers <= 1:
        for chunk in chunks:
            results.append(chunk_hardness(chunk))
            if progress:
                progress(len(chunk))
    else:
        pool = ThreadPoolExecutor(workers)
        try:
            for chunk, values in zip(chunks, pool.map(chunk_hardness, chunks)):
                results.append(values)
                if progress:
                    progress(len(chunk))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # after a bad mask, do not read the rest
    return np.concatenate(results) if results else np.zeros(0, dtype=np.float64)
