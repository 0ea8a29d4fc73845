"""Geometric and photometric transforms of one (image, mask) pair, as pure functions of numpy arrays.

Images are uint8 (H, W, 3) RGB and masks integer (H, W) label maps throughout: the data loader spends most of its
time here, and uint8 keeps every step (resize, crop, lookup tables, colour conversion) cheap. Every random choice
comes from an explicit ``rng: np.random.Generator`` so a sample is a pure function of its seed. The values follow
MMSegmentation's ADE20K recipe used by the FreeMask release (see ``freemask/config/defaults.py``).
"""

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np
from PIL import Image

Box = Tuple[int, int, int, int]  # (y0, x0, y1, x1), end exclusive

# How images are resized (INPUT.RESIZE_BACKEND): "cv2" as mmcv (the MMSegmentation families), "pil" as detectron2
# (the Mask2Former universal and FreeSeg families). Label maps take the nearest pixel centre either way.
RESIZE_BACKENDS = ("cv2", "pil")

# How many times a crop is re-drawn while one category dominates it (MMSegmentation's RandomCrop).
CROP_RETRIES = 10


# ------------------------------------------------------------------------------------------------------------ resize
def sample_shortest_edge(sizes: Sequence[int], sampling: str, rng: np.random.Generator) -> int:
    """A training shortest-edge length: one of ``sizes`` ("choice") or an integer in [sizes[0], sizes[1]] ("range")."""
    if sampling == "choice":
        return int(sizes[rng.integers(len(sizes))])
    if sampling == "range":
        low, high = sizes
        return int(rng.integers(low, high + 1))
    raise ValueError(f"shortest-edge sampling must be 'choice' or 'range', got {sampling!r}")


def shortest_edge_size(height: int, width: int, short: int, max_size: int, backend: str = "cv2") -> Tuple[int, int]:
    """(new_h, new_w): shortest edge ``short`` unless that makes the longest exceed ``max_size``; aspect kept.

    Each backend keeps its family's arithmetic, which differ when a side lands on x.5 (11x22 to 800 / 1333: 667x1333
    with one factor, 666x1333 with detectron2's two steps):

    - "cv2": one factor min(short / shortest, max_size / longest) times each side, rounded half up (mmcv,
      mmcv/image/geometric.py, ``rescale_size``, which MMSegmentation's ``Resize`` calls);
    - "pil": the shortest edge set to ``short`` and the other scaled, then both scaled down when the longest exceeds
      ``max_size``, rounded half up (facebookresearch/detectron2, detectron2/data/transforms/augmentation_impl.py,
      ``ResizeShortestEdge.get_output_shape``).
    """
    if backend == "pil":
        factor = short / min(height, width)
        new_h, new_w = (float(short), factor * width) if height < width else (factor * height, float(short))
        longest = max(new_h, new_w)
        if longest > max_size:
            new_h, new_w = new_h * (max_size / longest), new_w * (max_size / longest)
        return int(new_h + 0.5), int(new_w + 0.5)
    _check_backend(backend)
    scale = min(short / min(height, width), max_size / max(height, width))
    return int(height * scale + 0.5), int(width * scale + 0.5)


def resize_image(image: np.ndarray, size: Tuple[int, int], backend: str = "cv2") -> np.ndarray:
    """Bilinear resize of a uint8 (H, W, 3) image to ``size`` = (h, w); the input itself when the size is unchanged.

    The two backends give different pixels, so each model family resizes as its official code does:

    - "cv2": OpenCV's INTER_LINEAR, which samples the 2x2 nearest source pixels at any scale (mmcv,
      mmcv/image/geometric.py, ``imresize``, MMSegmentation's resize);
    - "pil": Pillow's BILINEAR, a triangle filter whose support grows with the reduction, so a downscale averages the
      whole footprint of each output pixel (antialiased); upscaled, only its rounding differs from OpenCV's, by one
      grey level at most, on about a quarter of the values (facebookresearch/detectron2,
      detectron2/data/transforms/transform.py, ``ResizeTransform.apply_image``, its path for uint8 images, which
      every detectron2 image resize takes; tests/data/mappers/test_resize_backends.py measures the difference).
    """
    if image.shape[:2] == tuple(size):
        return image
    if backend == "pil":
        if image.dtype != np.uint8:
            raise ValueError(f"the 'pil' resize takes uint8 images, got {image.dtype}")
        return np.array(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR))
    _check_backend(backend)
    return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def _check_backend(backend: str) -> None:
    if backend not in RESIZE_BACKENDS:
        raise ValueError(f"resize backend must be one of {RESIZE_BACKENDS}, got {backend!r}")


def resize_mask(mask: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an (H, W) label map to ``size`` = (h, w), so no label is invented.

    INTER_NEAREST_EXACT samples pixel centres, the same grid as the bilinear image resize (plain INTER_NEAREST is
    shifted by up to half a pixel).
    """
    if mask.shape[:2] == tuple(size):
        return mask
    return cv2.resize(mask, (size[1], size[0]), interpolation=cv2.INTER_NEAREST_EXACT)


def resize_for_test(image: np.ndarray, min_size: int, max_size: int, backend: str = "cv2") -> np.ndarray:
    """The evaluation resize: shortest edge ``min_size``, longest at most ``max_size``, aspect kept, bilinear, with the
    size arithmetic and the filter of ``backend`` (see ``shortest_edge_size`` and ``resize_image``)."""
    size = shortest_edge_size(image.shape[0], image.shape[1], min_size, max_size, backend)
    return resize_image(image, size, backend)


# -------------------------------------------------------------------------------------------------------------- crop
def random_crop_box(
    mask: np.ndarray,
    crop_size: Tuple[int, int],
    rng: np.random.Generator,
    cat_max_ratio: float = 1.0,
    ignore_label: int = 255,
) -> Box:
    """A random ``crop_size`` = (h, w) window of ``mask``; on an axis shorter than the crop, the whole axis.

    With ``0 < cat_max_ratio < 1`` the window is re-drawn up to 10 times until it holds more than one category and
    none covers ``cat_max_ratio`` or more of its non-ignored pixels (MMSegmentation's rule: after 10 failures the
    last draw is kept). This keeps crops of a sky- or wall-dominated image informative.
    """
    height, width = mask.shape[:2]
    crop_h, crop_w = min(crop_size[0], height), min(crop_size[1], width)

    def draw() -> Box:
        y0 = int(rng.integers(height - crop_h + 1))
        x0 = int(rng.integers(width - crop_w + 1))
        return y0, x0, y0 + crop_h, x0 + crop_w

    box = draw()
    if not 0.0 < cat_max_ratio < 1.0:
        return box
    for _ in range(CROP_RETRIES):
        counts = _label_counts(crop(mask, box))
        if ignore_label < len(counts):
            counts[ignore_label] = 0
        counts = counts[counts > 0]
        if len(counts) > 1 and counts.max() < cat_max_ratio * counts.sum():
            break
        box = draw()
    return box


def _label_counts(mask: np.ndarray) -> np.ndarray:
    """Pixel count per label value; OpenCV's histogram reads a uint8 crop in place, ~4x faster than bincount."""
    if mask.dtype == np.uint8:
        return cv2.calcHist([mask], [0], None, [256], [0, 256]).ravel().astype(np.int64)
    return np.bincount(mask.ravel())


def crop(array: np.ndarray, box: Box) -> np.ndarray:
    """The (y0:y1, x0:x1) window of an image or mask (a view, no copy)."""
    y0, x0, y1, x1 = box
    return array[y0:y1, x0:x1]


def hflip(array: np.ndarray) -> np.ndarray:
    """Left-right mirror of an image or mask, as a new contiguous array."""
    return cv2.flip(array, 1)


def pad_bottom_right(array: np.ndarray, size: Tuple[int, int], value: int) -> np.ndarray:
    """Pad an image or mask at the bottom and right to at least ``size`` = (h, w) with ``value``.

    Padding only at the far edges keeps pixel (0, 0) fixed, so predictions are cropped back by slicing.
    """
    height, width = array.shape[:2]
    if height >= size[0] and width >= size[1]:
        return array
    out = np.full((max(height, size[0]), max(width, size[1])) + array.shape[2:], value, dtype=array.dtype)
    out[:height, :width] = array
    return out


# ------------------------------------------------------------------------------------------------------- photometric
_IDENTITY = np.arange(256, dtype=np.uint8)


@dataclass(frozen=True)
class PhotometricParams:
    """The random draws of one photometric distortion; ``None`` means that step did not fire.

    Split from the drawing so that a test can apply the same draws to our pipeline and to a float32 reference.
    """

    brightness: Optional[float] = None  # beta added to every value
    contrast: Optional[float] = None  # alpha multiplying every value
    contrast_first: bool = True  # contrast right after brightness (else last)
    saturation: Optional[float] = None  # alpha multiplying the HSV saturation
    hue: Optional[int] = None  # shift of the OpenCV uint8 hue (0..179, 2 degrees per step), modulo 180


def _affine_lut(alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    """uint8 table of clip(v * alpha + beta), truncated towards zero as MMSegmentation's float->uint8 cast does."""
    return np.clip(np.arange(256, dtype=np.float32) * alpha + beta, 0, 255).astype(np.uint8)


def sample_photometric_params(
    rng: np.random.Generator,
    brightness_delta: int = 32,
    contrast_range: Tuple[float, float] = (0.5, 1.5),
    saturation_range: Tuple[float, float] = (0.5, 1.5),
    hue_delta: int = 18,
) -> PhotometricParams:
    """Draw MMSegmentation's PhotoMetricDistortion parameters: each step fires with prob 0.5, contrast goes first or
    last with prob 0.5. The hue shift is an integer in [-hue_delta, hue_delta), upper bound excluded, as numpy's
    ``randint(-18, 18)`` draws it there."""
    brightness = rng.uniform(-brightness_delta, brightness_delta) if rng.integers(2) else None
    contrast_first = bool(rng.integers(2))
    contrast = rng.uniform(*contrast_range) if rng.integers(2) else None
    saturation = rng.uniform(*saturation_range) if rng.integers(2) else None
    hue = (int(rng.integers(-hue_delta, hue_delta)) if hue_delta > 0 else 0) if rng.integers(2) else None
    return PhotometricParams(brightness, contrast, contrast_first, saturation, hue)


def _hsv_lut(image: np.ndarray, table: np.ndarray) -> np.ndarray:
    """One uint8 RGB -> HSV -> RGB round trip with a (1, 256, 3) table applied to the HSV values."""
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    return cv2.cvtColor(cv2.LUT(hsv, table, dst=hsv), cv2.COLOR_HSV2RGB, dst=hsv)


def apply_photometric(image: np.ndarray, params: PhotometricParams) -> np.ndarray:
    """The distortion ``params`` describe, on a uint8 (H, W, 3) RGB image (the input itself if no step fires).

    Bit-identical to MMSegmentation's float32 arithmetic: a per-value step is a 256-entry table of the same float32
    formula (adjacent ones composed into one table), and saturation and hue each keep their own lossy uint8 HSV
    round trip, as MMSegmentation does (merging them would shift a few pixels by up to 3 levels).
    """
    before = _IDENTITY if params.brightness is None else _affine_lut(beta=params.brightness)
    contrast = None if params.contrast is None else _affine_lut(alpha=params.contrast)
    if params.contrast_first and contrast is not None:
        before = contrast[before]
    out = image if before is _IDENTITY else cv2.LUT(image, before)
    if params.saturation is not None:
        out = _hsv_lut(out, np.stack([_IDENTITY, _affine_lut(alpha=params.saturation), _IDENTITY], -1)[None])
    if params.hue is not None:
        hue = ((_IDENTITY.astype(np.int16) + params.hue) % 180).astype(np.uint8)  # OpenCV uint8 hue is 0..179
        out = _hsv_lut(out, np.stack([hue, _IDENTITY, _IDENTITY], -1)[None])
    if not params.contrast_first and contrast is not None:
        out = cv2.LUT(out, contrast)
    return out


def photometric_distortion(
    image: np.ndarray,
    rng: np.random.Generator,
    brightness_delta: int = 32,
    contrast_range: Tuple[float, float] = (0.5, 1.5),
    saturation_range: Tuple[float, float] = (0.5, 1.5),
    hue_delta: int = 18,
) -> np.ndarray:
    """MMSegmentation's PhotoMetricDistortion of a uint8 (H, W, 3) RGB image (the input itself if no step fires).

    Brightness (+/- delta), then contrast (scale) either first or last (prob 0.5 each), saturation (scale of S) and
    hue (shift of H, mod 180); each step is applied with prob 0.5. Lookup tables instead of float copies of the image
    give the float32 original's output, faster (tests/data/mappers/test_photometric_equivalence.py,
    bench/data_loader.py).
    """
    params = sample_photometric_params(rng, brightness_delta, contrast_range, saturation_range, hue_delta)
    return apply_photometric(image, params)
