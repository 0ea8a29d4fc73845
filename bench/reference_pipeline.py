"""MMSegmentation's ADE20K training pipeline written the straightforward way: the baseline ours is measured against.

Why a copy of the recipe: ``bench/data_loader.py`` needs a faithful "what MMSegmentation would spend" mapper to show
what ``freemask.data.mappers.semantic.SemSegDatasetMapper`` gains, and
``tests/data/mappers/test_photometric_equivalence.py`` needs the float32 photometric arithmetic to prove our lookup
tables compute the same thing. Written from the behaviour of MMSegmentation's transforms (``LoadImageFromFile`` with
OpenCV, ``LoadAnnotations`` with Pillow, ``RandomChoiceResize`` shortest edge, ``RandomCrop`` with ``cat_max_ratio``,
``RandomFlip``, ``PhotoMetricDistortion``, ``Pad``, format to tensors); the image stays BGR until the end, as there.
``Normalize`` is left out because our model normalises.

Differences from MMSegmentation kept on purpose: randomness comes from a ``numpy.random.Generator`` argument
(not the global ``np.random``) so runs are reproducible, and the output dict is our mapper's, so the same
``MapDataset`` and samplers can serve both. Where ours departs from MMSegmentation on purpose (masks resized with
OpenCV's centre-aligned INTER_NEAREST_EXACT), the reference keeps MMSegmentation's INTER_NEAREST.
"""

import io
from typing import Dict, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from PIL import Image

from freemask.data.mappers.transforms import PhotometricParams


# ------------------------------------------------------------------------------------------------------- photometric
def convert(img: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    """MMSegmentation's ``convert``: float32 ``img * alpha + beta``, clipped to 0..255, cast (truncated) to uint8."""
    img = img.astype(np.float32) * alpha + beta
    return np.clip(img, 0, 255).astype(np.uint8)


def sample_params_mmseg_order(
    rng: np.random.Generator,
    brightness_delta: int = 32,
    contrast_range: Tuple[float, float] = (0.5, 1.5),
    saturation_range: Tuple[float, float] = (0.5, 1.5),
    hue_delta: int = 18,
) -> PhotometricParams:
    """The draws of one ``PhotoMetricDistortion.__call__``, in its order (contrast drawn where it is applied)."""
    brightness = rng.uniform(-brightness_delta, brightness_delta) if rng.integers(2) else None
    contrast_first = bool(rng.integers(2))  # MMSegmentation's "mode == 1"
    contrast = None
    if contrast_first:
        contrast = rng.uniform(*contrast_range) if rng.integers(2) else None
    saturation = rng.uniform(*saturation_range) if rng.integers(2) else None
    hue = int(rng.integers(-hue_delta, hue_delta)) if rng.integers(2) else None  # numpy randint: high excluded
    if not contrast_first:
        contrast = rng.uniform(*contrast_range) if rng.integers(2) else None
    return PhotometricParams(brightness, contrast, contrast_first, saturation, hue)


def photometric_bgr(img: np.ndarray, params: PhotometricParams) -> np.ndarray:
    """``PhotoMetricDistortion`` of a uint8 (H, W, 3) BGR image with given draws: float32 brightness and contrast,
    saturation and hue each in their own ``bgr2hsv`` / ``hsv2bgr`` round trip."""
    if params.brightness is not None:
        img = convert(img, beta=params.brightness)
    if params.contrast_first and params.contrast is not None:
        img = convert(img, alpha=params.contrast)
    if params.saturation is not None:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
        img[:, :, 1] = convert(img[:, :, 1], alpha=params.saturation)
        img = cv2.cvtColor(img, cv2.COLOR_HSV2BGR)
    if params.hue is not None:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
        img[:, :, 0] = (img[:, :, 0].astype(int) + params.hue) % 180
        img = cv2.cvtColor(img, cv2.COLOR_HSV2BGR)
    if not params.contrast_first and params.contrast is not None:
        img = convert(img, alpha=params.contrast)
    return img


# ------------------------------------------------------------------------------------------------------------ mapper
class ReferenceMapper:
    """Record -> ``{"file_name", "image": uint8 (3, H, W) RGB, "sem_seg": int64 (H, W)}``, MMSegmentation style.

    Same constructor values as the training path of ``SemSegDatasetMapper`` (shortest-edge choices, longest-edge cap,
    crop size, category ratio, ignore label); the geometric draws use the same generator calls in the same order.
    """

    def __init__(
        self,
        min_size_train: Sequence[int],
        max_size_train: int,
        crop_size: Tuple[int, int],
        cat_max_ratio: float = 0.75,
        ignore_label: int = 255,
    ) -> None:
        self.scales = [int(s) for s in min_size_train]
        self.max_size = max_size_train
        self.crop_size = (int(crop_size[0]), int(crop_size[1]))
        self.cat_max_ratio = cat_max_ratio
        self.ignore_label = ignore_label

    @classmethod
    def from_config(cls, cfg) -> "ReferenceMapper":
        return cls(
            cfg.INPUT.MIN_SIZE_TRAIN,
            cfg.INPUT.MAX_SIZE_TRAIN,
            tuple(cfg.INPUT.CROP.SIZE),
            cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA,
            cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE,
        )

    def load(self, record: Dict) -> Tuple[np.ndarray, np.ndarray]:
        """BGR uint8 image (OpenCV decode) and uint8 labels (Pillow decode, zero label reduced as MMSegmentation)."""
        with open(record["file_name"], "rb") as f:
            img = cv2.imdecode(np.frombuffer(f.read(), np.uint8), cv2.IMREAD_COLOR)
        with open(record["sem_seg_file_name"], "rb") as f:
            seg = np.array(Image.open(io.BytesIO(f.read()))).squeeze().astype(np.uint8)
        if record.get("reduce_zero_label", False):
            seg[seg == 0] = 255
            seg = seg - 1
            seg[seg == 254] = 255
        return img, seg

    def resize(self, img: np.ndarray, seg: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
        """Shortest edge drawn from the scales, longest edge capped (``ResizeShortestEdge``); bilinear / nearest."""
        short = self.scales[rng.integers(len(self.scales))]
        h, w = img.shape[:2]
        scale = short / min(h, w)
        new_h, new_w = (short, scale * w) if h < w else (scale * h, short)
        if max(new_h, new_w) > self.max_size:
            cap = self.max_size / max(new_h, new_w)
            new_h, new_w = new_h * cap, new_w * cap
        size = (int(new_w + 0.5), int(new_h + 0.5))
        return (
            cv2.resize(img, size, interpolation=cv2.INTER_LINEAR),
            cv2.resize(seg, size, interpolation=cv2.INTER_NEAREST),
        )

    def crop_bbox(self, img: np.ndarray, rng: np.random.Generator) -> Tuple[int, int, int, int]:
        margin_h = max(img.shape[0] - self.crop_size[0], 0)
        margin_w = max(img.shape[1] - self.crop_size[1], 0)
        y0, x0 = int(rng.integers(0, margin_h + 1)), int(rng.integers(0, margin_w + 1))
        return y0, y0 + self.crop_size[0], x0, x0 + self.crop_size[1]

    def random_crop(self, img: np.ndarray, seg: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
        """``RandomCrop``: re-draw up to 10 times while one category covers ``cat_max_ratio`` of the crop."""
        y0, y1, x0, x1 = self.crop_bbox(img, rng)
        if self.cat_max_ratio < 1.0:
            for _ in range(10):
                labels, cnt = np.unique(seg[y0:y1, x0:x1], return_counts=True)
                cnt = cnt[labels != self.ignore_label]
                if len(cnt) > 1 and np.max(cnt) / np.sum(cnt) < self.cat_max_ratio:
                    break
                y0, y1, x0, x1 = self.crop_bbox(img, rng)
        return img[y0:y1, x0:x1, ...], seg[y0:y1, x0:x1]

    def pad(self, array: np.ndarray, value: int) -> np.ndarray:
        bottom = max(self.crop_size[0] - array.shape[0], 0)
        right = max(self.crop_size[1] - array.shape[1], 0)
        return cv2.copyMakeBorder(array, 0, bottom, 0, right, cv2.BORDER_CONSTANT, value=value)

    def __call__(self, record: Dict, rng: Optional[np.random.Generator] = None) -> Dict:
        if rng is None:
            raise ValueError("the reference mapper is training-only and needs an rng")
        img, seg = self.load(record)
        img, seg = self.resize(img, seg, rng)
        img, seg = self.random_crop(img, seg, rng)
        if rng.random() < 0.5:
            img, seg = np.flip(img, axis=1), np.flip(seg, axis=1).copy()
        img = photometric_bgr(img, sample_params_mmseg_order(rng))
        img, seg = self.pad(img, 0), self.pad(seg, self.ignore_label)
        img = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_BGR2RGB)
        return {
            "file_name": record["file_name"],
            "image": torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))),
            "sem_seg": torch.from_numpy(seg.astype(np.int64)),
        }
