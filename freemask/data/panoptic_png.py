"""COCO panoptic PNGs: segment ids stored as colours, ``id = R + 256 G + 256² B`` (0 = void).

One reader for the dataset loaders, the preparation scripts and the panoptic evaluator, so a PNG that does not match
its JSON is reported the same way wherever it is met. Our own few lines instead of panopticapi's ``rgb2id``/``id2rgb``.
"""

import os
from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from .errors import RecordError


def rgb2id(color: np.ndarray) -> np.ndarray:
    """COCO panoptic PNG colours ``(H, W, 3)`` RGB uint8 to segment ids ``id = R + 256 G + 256² B`` (int32 (H, W))."""
    color = np.asarray(color)
    if color.ndim != 3 or color.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB array, got shape {color.shape}")
    color = color.astype(np.int32)
    return color[..., 0] + 256 * color[..., 1] + 65536 * color[..., 2]


def id2rgb(ids: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb2id`: ids ``(H, W)`` in ``0 .. 256³ - 1`` to uint8 ``(H, W, 3)`` RGB."""
    ids = np.asarray(ids).astype(np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= 1 << 24):
        raise ValueError(
            f"segment ids must lie in 0..{(1 << 24) - 1} to fit in an RGB PNG, got {ids.min()}..{ids.max()}"
        )
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)


def read_panoptic_png(path: str, segments_info: Sequence[Mapping[str, Any]], source: str = "") -> np.ndarray:
    """(H, W) int32 segment ids of a COCO panoptic PNG whose ids are exactly those ``segments_info`` lists.

    RecordError naming the file (``kind`` for tools/check_dataset.py) when it is missing, undecodable, not 8-bit RGB
    (a semantic label map given as a panoptic PNG), or when the PNG and ``segments_info`` (this image's segments in
    the JSON ``source``) disagree in either direction: a non-void PNG id the JSON does not list, a listed segment
    with no pixel in the PNG (it would train and evaluate as an object of area 0), or an id listed twice.
    panopticapi refuses the first two in predictions (cocodataset/panopticapi, panopticapi/evaluation.py,
    pq_compute_single_core); ground truth gets the same checks here, read by training, evaluation and the checker.
    """
    source = source or "the panoptic JSON"
    if not os.path.isfile(path):
        raise RecordError(
            f"{path}: panoptic PNG not found, but {source} names it; check the panoptic PNG folder (e.g. "
            "panoptic_val2017/) next to the JSON, or re-extract / re-prepare both",
            kind="missing_panoptic_png",
            path=path,
        )
    image = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise RecordError(
            f"{path}: not a valid PNG; re-extract or re-prepare the panoptic annotations",
            kind="bad_panoptic_png",
            path=path,
        )
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        channels = 1 if image.ndim == 2 else image.shape[2]
        raise RecordError(
            f"{path}: {channels}-channel {image.dtype} PNG, but a panoptic PNG is 8-bit RGB with id = R + 256 G + "
            "256² B (a semantic label map given as the panoptic PNG?)",
            kind="bad_panoptic_png",
            path=path,
        )
    ids = rgb2id(image[..., ::-1])  # OpenCV decodes to BGR
    present = np.unique(ids)
    present = set(present[present != 0].tolist())
    listed = [int(s["id"]) for s in segments_info]
    same_source = "re-extract or re-prepare both from the same conversion"
    unlisted = sorted(present - set(listed))
    if unlisted:
        raise RecordError(
            f"{path}: segment ids {_shown(unlisted)} are in the PNG but not in the segments_info of {source} for "
            f"this image; the PNG and the JSON do not belong together — {same_source}",
            kind="segment_ids_mismatch",
            path=path,
        )
    absent = sorted(set(listed) - present)
    if absent:
        raise RecordError(
            f"{path}: segments {_shown(absent)} are listed in the segments_info of {source} for this image but have "
            f"no pixel in the PNG; remove them from the JSON, or {same_source}",
            kind="segment_ids_mismatch",
            path=path,
        )
    if len(listed) != len(present):
        twice = sorted({i for i in listed if listed.count(i) > 1})
        raise RecordError(
            f"{path}: segment ids {_shown(twice)} are listed more than once in the segments_info of {source} for "
            f"this image; keep one entry per segment, or {same_source}",
            kind="segment_ids_mismatch",
            path=path,
        )
    return ids


def _shown(ids: Sequence[int], limit: int = 5) -> str:
    """The first ``limit`` ids with their PNG colours, for a message."""
    shown = ", ".join(f"{i} (RGB {i % 256},{i // 256 % 256},{i // 65536})" for i in ids[:limit])
    return shown + (", ..." if len(ids) > limit else "")
