"""FreeSeg's stage-1 mapper (``INPUT.DATASET_MAPPER_NAME "mask_former_binary_semantic"``): one class mask of one image,
cut out around the mask, as a crop for CLIP.

Follows bytedance/FreeSeg, mask2former/data/dataset_mappers/mask_former_binary_semantic_dataset_mapper.py
(``MaskFormerBinarySemanticDatasetMapper``) and mask2former/data/augmentations.py: crop the image to the class mask's
box grown by ``MODEL.CLIP_ADAPTER.MASK_EXPAND_RATIO`` (``CropImageWithMask`` / ``expand_box``: the box's right and
bottom ends clamped to width - 1 / height - 1, coordinates truncated); at training, a ``RandomResizedCrop`` of that
crop (area 8..100 %, aspect 3/4..4/3) and a horizontal flip; at test, the centre ``MIN_SIZE_TEST`` x ``MIN_SIZE_TEST``
window of the crop at its own resolution (``CenterCrop``: a smaller crop is padded, image with 0, mask with "not the
class", the window's offset rounded as Python's ``round``). The training crop is ``RandomResizedCrop(MIN_SIZE_TRAIN)``'s
size: height ``MIN_SIZE_TRAIN[1]`` x width ``MIN_SIZE_TRAIN[0]`` (244 x 224 in FreeSeg's configs; one value: square),
which CLIP reads on position embeddings interpolated to its patch grid (``FrozenClip.encode_image``). Where we differ:

- training: a window that would hold none of the mask is drawn again (up to 10 times, then the whole crop), where
  FreeSeg returns ``None`` and detectron2 silently takes another sample; our draws come from the per-sample seeded
  generator, FreeSeg's from numpy's global one;
- test: a centre window that misses the mask is kept (its crop is all fill: CLIP sees the mean colour) where FreeSeg
  returns ``None`` and detectron2's loader replaces the sample by a random other one.

The training mask is resized nearest-neighbour, falling back to "any coverage" when that loses a thin mask entirely,
so ``gt_masks`` is never empty there.

A record of one panoptic segment (``segment_id``, ``pan_seg_file_name``: FreeSeg's COCO full-task stage-1 records,
``MaskFormerBinaryFullDatasetMapper``) is cut around that segment of the panoptic PNG instead of a class of the
semantic map; a record's ``task`` is passed on to the model, which classifies the batch with that task's prompt.
"""

import math
from typing import Dict, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch

from ...config import CfgNode, ConfigError
from ..errors import DatasetError
from ..panoptic_png import read_panoptic_png
from . import transforms as T
from .semantic import SemSegDatasetMapper, read_image

RRC_SCALE = (0.08, 1.0)
RRC_RATIO = (3.0 / 4.0, 4.0 / 3.0)
RRC_TRIES = 10


def mask_box(mask: np.ndarray, expand_ratio: float = 1.0) -> T.Box:
    """(y0, x0, y1, x1), end exclusive, of the crop FreeSeg cuts around the True pixels of a bool (H, W) mask
    (``CropImageWithMask``): the mask's box (x, y, w, h with w = last column + 1 - first) grown about its centre by
    ``expand_ratio``, its start clamped to 0 and its end to width - 1 / height - 1, then (x, y, w, h) truncated to
    integers; at least one pixel each way."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    height, width = mask.shape
    x, y = float(cols[0]), float(rows[0])
    w, h = float(cols[-1] + 1 - cols[0]), float(rows[-1] + 1 - rows[0])
    cx, cy, w, h = x + 0.5 * w, y + 0.5 * h, w * expand_ratio, h * expand_ratio
    left, top = max(0.0, cx - 0.5 * w), max(0.0, cy - 0.5 * h)
    right, bottom = min(width - 1.0, cx + 0.5 * w), min(height - 1.0, cy + 0.5 * h)
    x0, y0, w, h = int(left), int(top), max(int(right - left), 1), max(int(bottom - top), 1)
    return y0, x0, y0 + h, x0 + w


def center_window(image: np.ndarray, binary: np.ndarray, size: int) -> Tuple[np.ndarray, np.ndarray]:
    """FreeSeg's test-time ``CenterCrop(size)``: pad a side shorter than ``size`` (image 0, mask False; the extra
    pixel of an odd padding goes right / bottom), then take the centred ``size`` x ``size`` window, its offset
    ``round((side - size) / 2)`` (Python's round, halves to even)."""
    pads = []
    for side in binary.shape:
        extra = max(size - side, 0)
        pads.append((extra // 2, (extra + 1) // 2))
    image = np.pad(image, (*pads, (0, 0)))
    binary = np.pad(binary, pads)
    height, width = binary.shape
    top, left = int(round((height - size) / 2.0)), int(round((width - size) / 2.0))
    box = (top, left, top + size, left + size)
    return T.crop(image, box), T.crop(binary, box)


def random_resized_box(mask: np.ndarray, rng: np.random.Generator) -> T.Box:
    """A RandomResizedCrop window of ``mask``'s frame (torchvision's rule: area fraction U(RRC_SCALE), log-uniform
    aspect in RRC_RATIO, up to RRC_TRIES draws) that holds some of the mask; the whole frame if no draw does."""
    height, width = mask.shape
    log_ratio = np.log(RRC_RATIO)
    for _ in range(RRC_TRIES):
        area = height * width * rng.uniform(*RRC_SCALE)
        aspect = math.exp(rng.uniform(*log_ratio))
        w, h = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            y0, x0 = int(rng.integers(height - h + 1)), int(rng.integers(width - w + 1))
            if mask[y0 : y0 + h, x0 : x0 + w].any():
                return y0, x0, y0 + h, x0 + w
    return 0, 0, height, width


def resize_binary(mask: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a bool mask to ``size`` (height, width); if that drops every True pixel (a thin
    mask shrunk), the pixels the mask covers at all (area interpolation > 0) instead."""
    out = T.resize_mask(mask.astype(np.uint8), size).astype(bool)
    if out.any() or not mask.any():
        return out
    return cv2.resize(mask.astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_AREA) > 0


def train_crop_size(min_size_train: Sequence[int]) -> Tuple[int, int]:
    """(height, width) of the training crops from ``INPUT.MIN_SIZE_TRAIN``: FreeSeg's ``RandomResizedCrop(size)``
    resizes to height ``size[1]`` x width ``size[0]`` (bytedance/FreeSeg, mask2former/data/augmentations.py,
    ``RandomResizedCrop.get_transform``); one value is a square."""
    sizes = [int(v) for v in min_size_train]
    if len(sizes) not in (1, 2) or min(sizes) < 1:
        raise ConfigError(
            f"INPUT.MIN_SIZE_TRAIN {sizes}: the stage-1 crop size is [width, height] (FreeSeg's [224, 244]) or one "
            "value for a square crop"
        )
    return (sizes[1], sizes[0]) if len(sizes) == 2 else (sizes[0], sizes[0])


class BinarySemanticMapper:
    """Callable mapping a stage-1 record ``{"file_name", "sem_seg_file_name", "category_id"}`` (or a segment's,
    module docstring) to ``{"file_name", "height", "width" (original size), "image": uint8 (3, h, w),
    "instances": {"gt_masks": bool (1, h, w), "gt_classes": int64 (1,)}, "task"?}`` (contract B of the FreeSeg
    port)."""

    def __init__(
        self,
        is_train: bool,
        size_train: Optional[Tuple[int, int]] = (244, 224),
        size_test: int = 224,
        expand_ratio: float = 1.0,
        flip: bool = True,
        ignore_label: int = 255,
        image_format: str = "RGB",
        resize_backend: str = "cv2",
    ) -> None:
        if is_train and size_train is None:
            raise ValueError("a training stage-1 mapper needs size_train (height, width)")
        if min((*(size_train or ()), size_test)) < 1 or expand_ratio <= 0:
            raise ConfigError(
                f"the stage-1 crop needs positive sizes and expand ratio, got INPUT.MIN_SIZE_TRAIN {size_train}, "
                f"INPUT.MIN_SIZE_TEST {size_test}, MODEL.CLIP_ADAPTER.MASK_EXPAND_RATIO {expand_ratio}"
            )
        self.is_train = is_train
        self.size_train = tuple(size_train) if size_train else None  # the test mapper takes the centre window
        self.size_test = size_test
        self.expand_ratio = expand_ratio
        self.flip = flip
        self.bgr = image_format == "BGR"
        # reading, size and label checks are the semantic mapper's (no class-count check: ids are the split's)
        self._reader = SemSegDatasetMapper(
            False, ignore_label=ignore_label, image_format=image_format, resize_backend=resize_backend
        )
        self.resize_backend = resize_backend

    @classmethod
    def from_config(cls, cfg: CfgNode, is_train: bool = True) -> "BinarySemanticMapper":
        flip = cfg.INPUT.RANDOM_FLIP
        if flip not in ("horizontal", "none"):
            raise ConfigError(f"INPUT.RANDOM_FLIP must be 'horizontal' or 'none', got {flip!r}")
        return cls(
            is_train,
            size_train=train_crop_size(cfg.INPUT.MIN_SIZE_TRAIN) if is_train else None,
            size_test=int(cfg.INPUT.MIN_SIZE_TEST),
            expand_ratio=float(cfg.MODEL.CLIP_ADAPTER.MASK_EXPAND_RATIO),
            flip=flip == "horizontal",
            ignore_label=cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE,
            image_format=cfg.INPUT.FORMAT,
            resize_backend=cfg.INPUT.RESIZE_BACKEND,
        )

    def __call__(self, record: Dict, rng: Optional[np.random.Generator] = None) -> Dict:
        if self.is_train and rng is None:
            raise ValueError("the training mapper needs an rng (numpy Generator) so samples are reproducible")
        image, binary = self.read_binary(record)
        category = int(record["category_id"])
        height, width = binary.shape
        image, binary = self.crop(image, binary, rng)
        if self.bgr:  # crops are made in RGB; the model gets INPUT.FORMAT
            image = image[:, :, ::-1]
        out = {
            "file_name": record["file_name"],
            "height": height,
            "width": width,
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "instances": {
                "gt_masks": torch.from_numpy(np.ascontiguousarray(binary))[None],
                "gt_classes": torch.tensor([category], dtype=torch.int64),
            },
        }
        if "task" in record:
            out["task"] = record["task"]
        return out

    def read_binary(self, record: Dict) -> Tuple[np.ndarray, np.ndarray]:
        """The RGB image and the bool mask of the record's class (semantic map) or segment (panoptic PNG)."""
        if "segment_id" not in record:
            image, labels = self._reader.read(record)
            binary = labels == int(record["category_id"])
            if not binary.any():
                raise DatasetError(
                    f"{record['sem_seg_file_name']}: class {record['category_id']} is not in the mask, but the split's "
                    "label counts list it; the label counts are stale — run the dataset's preparation script again "
                    "with --force"
                )
            return image, binary
        image = read_image(record["file_name"])
        png = record["pan_seg_file_name"]
        binary = read_panoptic_png(png, record["segments_info"]) == int(record["segment_id"])
        if binary.shape != image.shape[:2] or not binary.any():
            raise DatasetError(
                f"{png}: segment {record['segment_id']} is missing or the PNG is not the size of "
                f"{record['file_name']}; prepare the split again with --force"
            )
        return image, binary

    def crop(
        self, image: np.ndarray, binary: np.ndarray, rng: Optional[np.random.Generator]
    ) -> Tuple[np.ndarray, np.ndarray]:
        """(uint8 (h, w, 3) image, bool (h, w) mask) around the mask: the training crop size, or the test window
        (module docstring)."""
        box = mask_box(binary, self.expand_ratio)
        image, binary = T.crop(image, box), T.crop(binary, box)
        if not self.is_train:
            image, binary = center_window(image, binary, self.size_test)
            return np.ascontiguousarray(image), np.ascontiguousarray(binary)
        window = random_resized_box(binary, rng)
        image, binary = T.crop(image, window), T.crop(binary, window)
        image = T.resize_image(np.ascontiguousarray(image), self.size_train, self.resize_backend)
        binary = resize_binary(binary, self.size_train)
        if self.flip and rng.random() < 0.5:
            image, binary = T.hflip(image), T.hflip(binary.astype(np.uint8)).astype(bool)
        return image, binary
