"""COCO panoptic PNGs: segment ids stored as colours, ``id = R + 256 G + 256² B`` (0 = void).

One reader for the dataset loaders, the preparation scripts and the panoptic evaluator, so a PNG that does not match
its JSON is reported the same way wherever it is met. Our own few lines instead of panopticapi's ``rgb2id``/``id2rgb``.
"""

import os
from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from .errors import DatasetError


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
    """(H, W) int32 segment ids of a COCO panoptic PNG.

    DatasetError naming the file when it is missing, undecodable, not 8-bit RGB (a semantic label map given as a
    panoptic PNG), or holds a non-void id that ``segments_info`` (this image's segments in the JSON ``source``) does
    not list.
    """
    source = source or "the panoptic JSON"
    if not os.path.isfile(path):
        raise DatasetError(
            f"{path}: panoptic PNG not found, but {source} names it; check the panoptic PNG folder (e.g. "
            "panoptic_val2017/) next to the JSON, or re-extract / re-prepare both"
        )
    image = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DatasetError(f"{path}: not a valid PNG; re-extract or re-prepare the panoptic annotations")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        channels = 1 if image.ndim == 2 else image.shape[2]
        raise DatasetError(
            f"{path}: {channels}-channel {image.dtype} PNG, but a panoptic PNG is 8-bit RGB with id = R + 256 G + "
            "256² B (a semantic label map given as the panoptic PNG?)"
        )
    ids = rgb2id(image[..., ::-1])  # OpenCV decodes to BGR
    present = np.unique(ids)
    missing = sorted(set(present[present != 0].tolist()) - {int(s["id"]) for s in segments_info})
    if missing:
        shown = ", ".join(f"{i} (RGB {i % 256},{i // 256 % 256},{i // 65536})" for i in missing[:5])
        shown += ", ..." if len(missing) > 5 else ""
        raise DatasetError(
            f"{path}: segment ids {shown} are in the PNG but not in the segments_info of {source} for this image; "
            "the PNG and the JSON do not belong together — re-extract or re-prepare both from the same conversion"
        )
    return ids
