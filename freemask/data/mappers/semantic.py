"""Turn a dataset record into the model's input dict: read, reduce labels, augment (train) or resize (test).

The output dicts are described in ``SemSegDatasetMapper.__call__``; the training recipe is MMSegmentation's (resize,
crop with a category-ratio check, flip, photometric distortion, pad) as used by the FreeMask release.
"""

import os
from typing import TYPE_CHECKING, Dict, Optional, Sequence, Tuple

import cv2
import numpy as np

from ...commands import hint
from ...errors import ConfigError
from ..errors import DatasetError
from . import transforms as T

if TYPE_CHECKING:
    import torch

_CHECK = (
    f"check the split with {hint('check-dataset')}, then replace or remove the file or re-run the dataset's "
    "preparation script"
)
_JPEG_START, _JPEG_END = b"\xff\xd8", b"\xff\xd9"


def _read_bytes(path: str, kind: str) -> np.ndarray:
    try:
        return np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise DatasetError(f"{path}: cannot read {kind} ({e.strerror or e}); {_CHECK}") from None


def read_image(path: str) -> np.ndarray:
    """uint8 (H, W, 3) RGB image; DatasetError if the file is missing, truncated or not an image."""
    data = _read_bytes(path, "image")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    # OpenCV < 5 decodes a truncated JPEG with a warning and a grey bottom; its end-of-image marker is missing.
    truncated = data[:2].tobytes() == _JPEG_START and _JPEG_END not in data[-1024:].tobytes()
    if image is None or truncated:
        raise DatasetError(f"{path}: image is truncated or not a valid image file; {_CHECK}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=image)


def read_mask(path: str) -> np.ndarray:
    """Integer (H, W) label map as stored (uint8 or uint16); DatasetError if missing, corrupt or a colour image."""
    data = _read_bytes(path, "mask")
    mask = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if mask is None:
        raise DatasetError(f"{path}: mask is truncated or not a valid image file; {_CHECK}")
    if mask.ndim != 2:
        raise DatasetError(
            f"{path}: mask has {mask.shape[2]} channels but must be a single-channel label map (a colour or palette "
            f"PNG?); convert it to a PNG of class indices"
        )
    return mask


def reduce_zero_label(mask: np.ndarray, ignore_label: int) -> np.ndarray:
    """Raw ADE20K convention to training labels: 0 -> ignore, k -> k - 1, ``ignore_label`` stays ignore.

    A lookup table on uint8 masks (no wrap-around of 0 - 1), plain arithmetic on wider ones.
    """
    if mask.dtype == np.uint8:
        lut = np.arange(-1, 255, dtype=np.int16)
        lut[[0, ignore_label]] = ignore_label
        return cv2.LUT(mask, lut.astype(np.uint8))
    out = mask.astype(np.int64) - 1
    out[(mask == 0) | (mask == ignore_label)] = ignore_label
    return out.astype(mask.dtype)


def check_label_range(mask: np.ndarray, num_classes: int, ignore_label: int, path: str, reduced: bool) -> None:
    """DatasetError naming ``path`` when a training label (after any zero-label reduction) is neither a class
    ``0..num_classes-1`` nor ``ignore_label``; the loss would otherwise stop with ``Target 199 is out of bounds``.

    One ``max`` per sample; the ``bincount`` listing the bad values runs only when that max is out of range (a mask
    holding the ignore label). MMSegmentation's and detectron2's loaders do not check; the values refused here are
    exactly those their cross-entropy (``ignore_index`` = the ignore label) refuses, on CPU with that IndexError, on
    CUDA with a device-side assert that names no file."""
    if mask.size == 0 or int(mask.max()) < num_classes:
        return
    values = np.flatnonzero(np.bincount(mask.ravel()))
    bad = values[(values >= num_classes) & (values != ignore_label)]
    if not bad.size:
        return
    more = f" (and {bad.size - 1} more values up to {bad[-1]})" if bad.size > 1 else ""
    after = " after reducing the zero label" if reduced else ""
    raise DatasetError(
        f"{path}: label {bad[0]}{more}{after} is not one of the MODEL.SEM_SEG_HEAD.NUM_CLASSES {num_classes} classes "
        f"(0..{num_classes - 1}) nor the ignore label {ignore_label}; fix: set NUM_CLASSES to the dataset's class "
        f"count, or re-export the mask in the dataset's label convention ({hint('check-dataset')} lists every such "
        "file)"
    )


class SemSegDatasetMapper:
    """Callable mapping a record ``{"file_name", "sem_seg_file_name", "reduce_zero_label"}`` to the model input.

    All training randomness comes from the ``rng`` passed per call, so a sample is a pure function of
    (record, seed); the sampler derives the seed from the global batch number, which makes ``--resume`` exact.
    """

    def __init__(
        self,
        is_train: bool,
        min_size_train: Sequence[int] = (512,),
        min_size_train_sampling: str = "choice",
        max_size_train: int = 2048,
        crop_size: Optional[Tuple[int, int]] = (512, 512),
        cat_max_ratio: float = 0.75,
        flip: bool = True,
        color_aug: bool = True,
        min_size_test: int = 512,
        max_size_test: int = 2048,
        ignore_label: int = 255,
        image_format: str = "RGB",
        num_classes: Optional[int] = None,
        resize_backend: str = "cv2",
    ) -> None:
        """``crop_size`` None trains on whole resized images (no crop, no pad); ``cat_max_ratio`` outside (0, 1)
        disables the category-ratio check; ``num_classes`` (None: no check) makes a label outside
        ``0..num_classes-1`` other than ``ignore_label`` a DatasetError naming the mask; ``resize_backend`` resizes
        images as mmcv ("cv2") or detectron2 ("pil") does (``transforms.resize_image``)."""
        if min_size_train_sampling not in ("choice", "range"):
            raise ConfigError(
                f"INPUT.MIN_SIZE_TRAIN_SAMPLING must be 'choice' or 'range', got {min_size_train_sampling!r}"
            )
        if min_size_train_sampling == "range" and len(min_size_train) != 2:
            raise ConfigError(
                f"INPUT.MIN_SIZE_TRAIN must be [min, max] with 'range' sampling, got {list(min_size_train)}"
            )
        if image_format not in ("RGB", "BGR"):
            raise ConfigError(f"INPUT.FORMAT must be RGB or BGR, got {image_format!r}")
        if not 0 <= ignore_label <= 255:
            raise ConfigError(f"MODEL.SEM_SEG_HEAD.IGNORE_VALUE must be in 0..255, got {ignore_label}")
        if resize_backend not in T.RESIZE_BACKENDS:
            raise ConfigError(f"INPUT.RESIZE_BACKEND must be one of {T.RESIZE_BACKENDS}, got {resize_backend!r}")
        self.is_train = is_train
        self.min_size_train = tuple(int(s) for s in min_size_train)
        self.min_size_train_sampling = min_size_train_sampling
        self.max_size_train = max_size_train
        self.crop_size = (int(crop_size[0]), int(crop_size[1])) if crop_size else None
        self.cat_max_ratio = cat_max_ratio
        self.flip = flip
        self.color_aug = color_aug
        self.min_size_test = min_size_test
        self.max_size_test = max_size_test
        self.ignore_label = ignore_label
        self.image_format = image_format
        self.num_classes = num_classes
        self.resize_backend = resize_backend

    @classmethod
    def from_config(cls, cfg, is_train: bool = True) -> "SemSegDatasetMapper":
        flip = cfg.INPUT.RANDOM_FLIP
        if flip not in ("horizontal", "none"):
            raise ConfigError(f"INPUT.RANDOM_FLIP must be 'horizontal' or 'none', got {flip!r}")
        return cls(
            is_train,
            min_size_train=cfg.INPUT.MIN_SIZE_TRAIN,
            min_size_train_sampling=cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING,
            max_size_train=cfg.INPUT.MAX_SIZE_TRAIN,
            crop_size=tuple(cfg.INPUT.CROP.SIZE) if cfg.INPUT.CROP.ENABLED else None,
            cat_max_ratio=cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA,
            flip=flip == "horizontal",
            color_aug=cfg.INPUT.COLOR_AUG_SSD,
            min_size_test=cfg.INPUT.MIN_SIZE_TEST,
            max_size_test=cfg.INPUT.MAX_SIZE_TEST,
            ignore_label=cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE,
            image_format=cfg.INPUT.FORMAT,
            num_classes=cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            resize_backend=cfg.INPUT.RESIZE_BACKEND,
        )

    def read(self, record: Dict) -> Tuple[np.ndarray, np.ndarray]:
        """uint8 (H, W, 3) RGB image and (H, W) training labels of a record, checked to have the same size."""
        image = read_image(record["file_name"])
        mask_path = record["sem_seg_file_name"]
        mask = read_mask(mask_path)
        if mask.shape != image.shape[:2]:
            raise DatasetError(
                f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image "
                f"{os.path.basename(record['file_name'])} is {image.shape[1]}x{image.shape[0]} (WxH); {_CHECK}"
            )
        reduced = bool(record.get("reduce_zero_label", False))
        if reduced:
            mask = reduce_zero_label(mask, self.ignore_label)
        if self.num_classes is not None:
            check_label_range(mask, self.num_classes, self.ignore_label, mask_path, reduced)
        return image, mask

    def __call__(self, record: Dict, rng: Optional[np.random.Generator] = None) -> Dict:
        """Train: {"file_name", "image": uint8 (3, H, W) RGB, "sem_seg": (H, W) in the smallest integer dtype that
        holds its labels (``label_tensor``: uint8 for 8-bit label maps; the model widens it to int64 on its device)}
        with (H, W) == crop size. Test: {"file_name", "image": uint8 (3, h, w) at the test size, "sem_seg": int64
        (H0, W0) at the original resolution (the evaluators' ground truth), "height": H0, "width": W0}."""
        image, mask = self.read(record)
        if self.is_train:
            if rng is None:
                raise ValueError("the training mapper needs an rng (numpy Generator) so samples are reproducible")
            image, mask = self._augment(image, mask, rng)
            return {"file_name": record["file_name"], "image": self._to_chw(image), "sem_seg": label_tensor(mask)}
        height, width = mask.shape
        image = self.resize_for_test(image)
        return {
            "file_name": record["file_name"],
            "image": self._to_chw(image),
            "sem_seg": _to_long(mask),
            "height": height,
            "width": width,
        }

    def resize_for_test(self, image: np.ndarray) -> np.ndarray:
        """The uint8 (H, W, 3) image at the test size (INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST, INPUT.RESIZE_BACKEND): the
        one test-time resize of every mapper and of tools/demo.py."""
        return T.resize_for_test(image, self.min_size_test, self.max_size_test, self.resize_backend)

    def _to_chw(self, image: np.ndarray) -> "torch.Tensor":
        """uint8 (3, H, W) in INPUT.FORMAT channel order (augmentations work in RGB)."""
        if self.image_format == "BGR":
            image = image[:, :, ::-1]
        return _tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))

    def _augment(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
        short = T.sample_shortest_edge(self.min_size_train, self.min_size_train_sampling, rng)
        size = T.shortest_edge_size(image.shape[0], image.shape[1], short, self.max_size_train, self.resize_backend)
        image, mask = T.resize_image(image, size, self.resize_backend), T.resize_mask(mask, size)
        if self.crop_size:
            box = T.random_crop_box(mask, self.crop_size, rng, self.cat_max_ratio, self.ignore_label)
            image, mask = T.crop(image, box), T.crop(mask, box)
        if self.flip and rng.random() < 0.5:
            image, mask = T.hflip(image), T.hflip(mask)
        if self.color_aug:
            image = T.photometric_distortion(image, rng)
        if self.crop_size:
            image = T.pad_bottom_right(image, self.crop_size, 0)
            mask = T.pad_bottom_right(mask, self.crop_size, self.ignore_label)
        return image, mask


def _tensor(array: np.ndarray) -> "torch.Tensor":
    """``torch.from_numpy``, with torch imported on the first sample rather than with this module: the dataset
    preparation scripts and the dataset registration import the readers above and need no torch (seconds of import).
    """
    import torch

    return torch.from_numpy(array)


def _to_long(mask: np.ndarray) -> "torch.Tensor":
    return _tensor(mask.astype(np.int64))


_LABEL_DTYPES = (np.uint8, np.int16, np.int32, np.int64)


def label_tensor(mask: np.ndarray) -> "torch.Tensor":
    """(H, W) labels as a fresh tensor of the first of uint8, int16, int32, int64 that holds every value.

    Why not int64: a 512x512 int64 map is 2 MB that every DataLoader worker pickles through shared memory and the
    trainer copies to the GPU, against 256 KB as uint8 (the ignore label is 0..255, so every 8-bit label map stays
    uint8); the model widens it on its device, where the losses need int64 indices. Wider maps (uint16 PNGs of
    datasets with more than 255 classes) take the smallest signed type that holds their largest label. Always a copy,
    so the tensor never keeps a larger augmented array alive through a view.
    """
    if mask.dtype == np.uint8 or mask.size == 0:
        return _tensor(mask.astype(np.uint8))
    low, high = int(mask.min()), int(mask.max())
    dtype = next(d for d in _LABEL_DTYPES if np.iinfo(d).min <= low and high <= np.iinfo(d).max)
    return _tensor(mask.astype(dtype))
