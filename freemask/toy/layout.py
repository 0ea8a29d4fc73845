"""What the toy dataset's three generators share: its parameters, the scene layout every image is drawn from (the
semantic, panoptic and instance files of one image come from the same layout) and the atomic image writer.

In its own module so that :mod:`.generator` can call :mod:`.generator_panoptic` and :mod:`.generator_open_vocab`
while both use these, with no import loop between them.
"""

import math
from dataclasses import dataclass
from typing import List, Tuple

import cv2
import numpy as np

from ..data.datasets.toy import TOY_CLASSES
from ..utils.atomic import atomic_write_bytes

LABEL = {name: index + 1 for index, name in enumerate(TOY_CLASSES)}  # raw ADE convention: 0 = unlabeled

Layer = Tuple[int, np.ndarray]  # (raw label, bool (H, W) region); layers are painted back to front


@dataclass(frozen=True)
class ToyParams:
    num_train: int = 48
    num_val: int = 16
    num_seeds: int = 4  # synthetic copies per real training mask, seeds 42, 43, ...
    height: int = 128
    width: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_train < 1 or self.num_val < 1 or self.num_seeds < 0:
            raise ValueError(f"need num_train >= 1, num_val >= 1, num_seeds >= 0, got {self}")
        if min(self.height, self.width) < 32:
            raise ValueError(f"image size must be at least 32x32, got {self.height}x{self.width}")


# ------------------------------------------------------------------------------------------------------------ layout
def grid(h: int, w: int) -> Tuple[np.ndarray, np.ndarray]:
    """Row (H, 1) and column (1, W) coordinates, broadcast against each other."""
    return np.arange(h, dtype=np.float32)[:, None], np.arange(w, dtype=np.float32)[None, :]


def sample_layout(h: int, w: int, rng: np.random.Generator) -> Tuple[List[Layer], np.ndarray]:
    """Layers of one scene and the bool (H, W) mask of its thin unlabeled borders.

    Sky above a wavy horizon, grass below, often a road in perspective, buildings on the horizon, then cars and
    persons whose size grows towards the bottom of the image (nearer), painted far to near.
    """
    yy, xx = grid(h, w)
    horizon = h * rng.uniform(0.3, 0.5)
    wave = horizon + 0.03 * h * np.sin(xx / w * 2 * math.pi * rng.uniform(0.5, 2.0) + rng.uniform(0, 2 * math.pi))
    sky = yy < wave
    layers: List[Layer] = [(LABEL["sky"], sky), (LABEL["grass"], ~sky)]
    depth = np.clip((yy - horizon) / (h - horizon), 0, 1)
    if rng.random() < 0.85:
        centre = w * rng.uniform(0.3, 0.7) + depth * w * rng.uniform(-0.3, 0.3)
        half = w * (rng.uniform(0.01, 0.05) + depth * rng.uniform(0.2, 0.45))
        layers.append((LABEL["road"], ~sky & (np.abs(xx - centre) < half)))
    for _ in range(rng.integers(0, 4)):
        width = w * rng.uniform(0.12, 0.35)
        left = rng.uniform(-0.1 * w, w - 0.5 * width)
        top, bottom = horizon - h * rng.uniform(0.1, 0.28), horizon + h * rng.uniform(0.0, 0.05)
        layers.append((LABEL["building"], (xx >= left) & (xx < left + width) & (yy >= top) & (yy < bottom)))
    things = []
    for label in [LABEL["car"]] * int(rng.integers(0, 4)) + [LABEL["person"]] * int(rng.integers(0, 4)):
        foot = rng.uniform(horizon + 0.1 * (h - horizon), 1.05 * h)
        near = (foot - horizon) / (h - horizon)
        centre = rng.uniform(0, w)
        if label == LABEL["car"]:
            height = h * (0.05 + 0.2 * near)
            half = 0.5 * height * rng.uniform(1.6, 2.4)
            roof = foot - 0.6 * height
            body = (np.abs(xx - centre) < half) & (yy >= roof) & (yy < foot)
            cabin = ((xx - centre) / (0.6 * half)) ** 2 + ((yy - roof) / (0.4 * height)) ** 2 < 1
            region = body | (cabin & (yy < roof))
        else:
            height = h * (0.08 + 0.3 * near)
            region = ((xx - centre) / (0.15 * height)) ** 2 + ((yy - foot + height / 2) / (height / 2)) ** 2 < 1
        things.append((foot, label, region))
    layers += [(label, region) for _, label, region in sorted(things, key=lambda t: t[0])]

    kernel = np.ones((3, 3), np.uint8)
    border = np.zeros((h, w), bool)
    for index, (_, region) in enumerate(layers):
        # Objects get a border half of the time, the horizon 30% of the time; the grass layer never.
        if (index >= 2 and rng.random() < 0.5) or (index == 0 and rng.random() < 0.3):
            border |= cv2.dilate(region.astype(np.uint8), kernel).astype(bool) & ~region
    return layers, border


def write_image(path: str, ext: str, array: np.ndarray, params: Tuple[int, ...] = ()) -> None:
    """Encode ``array`` as ``ext`` (cv2, BGR) and write it atomically; ``params``: cv2.imwrite flags."""
    ok, buf = cv2.imencode(ext, array, list(params))
    if not ok:
        raise OSError(f"could not encode {path}")
    atomic_write_bytes(path, buf.tobytes())
