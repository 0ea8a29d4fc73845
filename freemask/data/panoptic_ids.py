"""COCO panoptic PNG encoding: segment id = R + 256 G + 256^2 B (panopticapi ``utils.rgb2id`` / ``id2rgb``)."""

import numpy as np


def rgb2id(color: np.ndarray) -> np.ndarray:
    """int32 (H, W) segment ids of a uint8 (H, W, 3) RGB panoptic PNG (0 = void)."""
    color = color.astype(np.int32)
    return color[..., 0] + 256 * color[..., 1] + 256 * 256 * color[..., 2]


def id2rgb(ids: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) RGB encoding of integer (H, W) segment ids below 256^3, the inverse of :func:`rgb2id`."""
    ids = np.asarray(ids, dtype=np.int64)
    return np.stack([ids % 256, ids // 256 % 256, ids // (256 * 256) % 256], axis=-1).astype(np.uint8)
