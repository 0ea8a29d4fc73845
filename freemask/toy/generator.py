"""Procedural toy dataset: street-like scenes in the ADE20K on-disk layout, plus "synthetic" copies with defects.

Why: the engine and the FreeMask tools (filtering, re-sampling) need a dataset that a small CNN learns in minutes on
a CPU, with synthetic images that disagree with their masks in KNOWN places (``defects/``), so a test can check that
filtering finds them. Each class has its own colour and texture (gradient, speckle, stripes, bricks, checks) whose
details depend on a texture seed: a synthetic copy shares the real mask but not the real pixels, as a diffusion
model's output would.

Layout written under ``<root>/toy/``::

    ADEChallengeData2016/images/{training,validation}/toy_{train,val}_00000.jpg
    ADEChallengeData2016/annotations/{training,validation}/toy_{train,val}_00000.png   uint8, 0 = unlabeled, 1..6
    ADE20K_Synthetic/images/toy_train_00000_seed_42.jpg
    ADE20K_Synthetic/annotations/toy_train_00000_seed_42.png     the real mask, byte for byte
    ADE20K_Synthetic/defects/toy_train_00000_seed_42.png         uint8 1 where the image disagrees with the mask
    meta.json                                                      the parameters, written last (= complete)

then, beside them, the panoptic PNGs + JSON and the instance JSON (see ``generator_panoptic``) and the
open-vocabulary splits (``generator_open_vocab``).
"""

import json
import math
import os
import shutil
from dataclasses import asdict
from typing import Callable, Dict, List, Tuple

import cv2
import numpy as np

from ..data.datasets.toy import REAL_DIR, SYN_DIR
from ..utils.atomic import atomic_write_bytes
from .generator_open_vocab import generate_toy_open_vocab
from .generator_panoptic import generate_toy_panoptic
from .layout import LABEL, Layer, ToyParams, grid, sample_layout, write_image

FIRST_SYN_SEED = 42
DEFECT_PROB = 0.5
JPEG_QUALITY = 95
FORMAT_VERSION = 1


def parse_size(text: str) -> Tuple[int, int]:
    """'HEIGHTxWIDTH' (e.g. '512x683') -> (512, 683)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size must be HEIGHTxWIDTH such as 128x128, got {text!r}") from None
    return height, width


def _render(layers: List[Layer], shape: Tuple[int, int]) -> np.ndarray:
    """uint8 (H, W) label map of layers painted in order."""
    labels = np.zeros(shape, np.uint8)
    for label, region in layers:
        labels[region] = label
    return labels


# ---------------------------------------------------------------------------------------------------------- textures
def _smooth_noise(h: int, w: int, rng: np.random.Generator, cell: float) -> np.ndarray:
    """float32 (H, W) noise with features about ``cell`` pixels wide, roughly unit variance."""
    small = rng.standard_normal((max(2, round(h / cell)), max(2, round(w / cell)))).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _jitter(base, rng: np.random.Generator, amount: float) -> np.ndarray:
    return np.asarray(base, np.float32) + rng.uniform(-amount, amount, 3).astype(np.float32)


def _sky(h, w, rng, s):
    yy, _ = grid(h, w)
    clouds = np.clip(_smooth_noise(h, w, rng, 24 * s), 0, None)
    shade = 0.75 + 0.35 * yy / h
    return _jitter((90, 150, 230), rng, 15) * shade[..., None] + 40 * clouds[..., None]


def _grass(h, w, rng, s):
    _, xx = grid(h, w)
    speckle = rng.standard_normal((h, w), dtype=np.float32)
    blades = np.sin(2 * math.pi * xx / (rng.uniform(2.5, 4.0) * s) + rng.uniform(0, 2 * math.pi))
    return _jitter((60, 140, 45), rng, 15) + (30 * speckle + 12 * blades)[..., None] * np.float32([0.5, 1.0, 0.4])


def _road(h, w, rng, s):
    yy, _ = grid(h, w)
    stripes = np.sign(np.sin(2 * math.pi * yy / (rng.uniform(6, 10) * s) + rng.uniform(0, 2 * math.pi)))
    grey = rng.uniform(95, 125)
    return np.float32(grey) + (12 * rng.standard_normal((h, w), dtype=np.float32) + 10 * stripes)[..., None]


def _building(h, w, rng, s):
    yy, xx = grid(h, w)
    brick_h = rng.uniform(4, 7) * s
    row = np.floor((yy + rng.uniform(0, brick_h)) / brick_h)
    shift = (row % 2) * 1.25 * brick_h
    mortar = ((yy % brick_h) < 1.2 * s) | (((xx + shift) % (2.5 * brick_h)) < 1.2 * s)
    brick = _jitter((160, 70, 50), rng, 20)
    return np.where(mortar[..., None], np.float32(200), brick) + 8 * _smooth_noise(h, w, rng, 2 * s)[..., None]


def _car(h, w, rng, s):
    yy, xx = grid(h, w)
    paint = _jitter(((220, 40, 30), (230, 200, 30), (30, 80, 220))[rng.integers(3)], rng, 20)
    stripes = np.sin(2 * math.pi * (xx + yy) / (rng.uniform(6, 9) * s) + rng.uniform(0, 2 * math.pi)) > 0
    return paint * np.where(stripes, np.float32(1.0), np.float32(0.6))[..., None]


def _person(h, w, rng, s):
    yy, xx = grid(h, w)
    cell = rng.uniform(2.5, 4.0) * s
    checks = (np.floor(yy / cell) + np.floor(xx / cell)) % 2 == 1
    return np.where(checks[..., None], _jitter((200, 60, 170), rng, 20), _jitter((240, 180, 120), rng, 20))


TEXTURES: Dict[int, Callable] = {
    LABEL["sky"]: _sky,
    LABEL["grass"]: _grass,
    LABEL["road"]: _road,
    LABEL["building"]: _building,
    LABEL["car"]: _car,
    LABEL["person"]: _person,
}


def _paint(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 (H, W, 3) RGB image with each pixel textured as the class ``labels`` gives it."""
    h, w = labels.shape
    scale = min(h, w) / 128
    image = np.zeros((h, w, 3), np.float32)
    for label in sorted(TEXTURES):
        where = labels == label
        if where.any():
            np.copyto(image, TEXTURES[label](h, w, rng, scale), where=where[..., None])
    return np.clip(image, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------------------- defects
def _plant_defect(layers: List[Layer], rng: np.random.Generator, scale: float) -> List[Layer]:
    """Layers to paint a synthetic image from: one region shifted, grown/shrunk, or given another class's texture."""
    things = list(range(2, len(layers))) or [0, 1]  # road, buildings, cars, persons; sky or grass if none
    index = things[rng.integers(len(things))]
    label, region = layers[index]
    kind = rng.integers(3)
    if kind == 0:
        dy, dx = (rng.choice([-1, 1]) * round(scale * rng.uniform(3, 8)) for _ in range(2))
        shift = np.float32([[1, 0, dx], [0, 1, dy]])
        region = cv2.warpAffine(region.astype(np.uint8), shift, region.shape[::-1]).astype(bool)
    elif kind == 1:
        radius = max(1, round(scale * rng.uniform(2, 5)))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        morph = cv2.dilate if rng.random() < 0.5 else cv2.erode
        region = morph(region.astype(np.uint8), kernel).astype(bool)
    else:
        label = int(rng.choice([other for other in TEXTURES if other != label]))
    return layers[:index] + [(label, region)] + layers[index + 1 :]


# ------------------------------------------------------------------------------------------------------------ output
def _write_pair(images: str, masks: str, stem: str, image: np.ndarray, mask: np.ndarray) -> None:
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    write_image(os.path.join(images, stem + ".jpg"), ".jpg", bgr, (cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY))
    write_image(os.path.join(masks, stem + ".png"), ".png", mask)


def _synthetic_copy(
    layers: List[Layer], labels: np.ndarray, mask: np.ndarray, seeds: List[int], scale: float
) -> Tuple[np.ndarray, np.ndarray]:
    """A synthetic image of ``mask`` with new textures, and the uint8 (H, W) 0/1 map of its planted defects."""
    rng = np.random.default_rng(seeds)
    painted = labels
    if rng.random() < DEFECT_PROB:
        painted = _render(_plant_defect(layers, rng, scale), labels.shape)
    defects = ((painted != labels) & (mask != 0)).astype(np.uint8)
    return _paint(painted, rng), defects


def _make_folders(toy: str) -> Dict[str, str]:
    folders = {
        f"{kind}/{split}": os.path.join(toy, REAL_DIR, kind, split)
        for kind in ("images", "annotations")
        for split in ("training", "validation")
    }
    folders.update({f"syn/{kind}": os.path.join(toy, SYN_DIR, kind) for kind in ("images", "annotations", "defects")})
    for folder in folders.values():
        os.makedirs(folder, exist_ok=True)
    return folders


def generate_toy_dataset(root: str, params: ToyParams = ToyParams(), force: bool = False) -> bool:
    """Write the toy dataset under ``<root>/toy``, with its panoptic and instance files
    (``generator_panoptic``) and open-vocabulary files (``generator_open_vocab``); False (and nothing
    written) if an identical one is complete. A complete semantic tree without the later files (written before they
    existed) only gains them.

    Deterministic given ``params``: every image draws from its own generator seeded by (seed, split, index,
    texture seed), so one image does not depend on how many others are generated.
    """
    toy = os.path.join(root, "toy")
    meta_path = os.path.join(toy, "meta.json")
    meta = {"format": FORMAT_VERSION, **asdict(params)}
    if not force and os.path.isfile(meta_path):
        with open(meta_path) as f:
            if json.load(f) == meta:
                return _generate_annotations(root, params, force=False)  # a tree written before the later files
    if os.path.exists(meta_path):
        os.remove(meta_path)  # first, so an interrupted run is never taken for a complete one
    for sub in (REAL_DIR, SYN_DIR):
        shutil.rmtree(os.path.join(toy, sub), ignore_errors=True)
    folders = _make_folders(toy)

    size = (params.height, params.width)
    scale = min(size) / 128
    splits = [("training", "train", params.num_train), ("validation", "val", params.num_val)]
    for split_id, (split, short, count) in enumerate(splits):
        for index in range(count):
            stem = f"toy_{short}_{index:05d}"
            layers, border = sample_layout(*size, np.random.default_rng([params.seed, split_id, index]))
            labels = _render(layers, size)
            mask = np.where(border, np.uint8(0), labels)
            image = _paint(labels, np.random.default_rng([params.seed, split_id, index, 0]))
            _write_pair(folders[f"images/{split}"], folders[f"annotations/{split}"], stem, image, mask)
            if split != "training":
                continue
            for syn_seed in range(FIRST_SYN_SEED, FIRST_SYN_SEED + params.num_seeds):
                syn_stem = f"{stem}_seed_{syn_seed}"
                syn_image, defects = _synthetic_copy(layers, labels, mask, [params.seed, 2, index, syn_seed], scale)
                _write_pair(folders["syn/images"], folders["syn/annotations"], syn_stem, syn_image, mask)
                write_image(os.path.join(folders["syn/defects"], syn_stem + ".png"), ".png", defects)

    atomic_write_bytes(meta_path, json.dumps(meta, indent=2).encode())
    _generate_annotations(root, params, force=True)
    return True


def _generate_annotations(root: str, params: ToyParams, force: bool) -> bool:
    """The panoptic files, then the open-vocabulary files made from them (redone whenever the panoptic ones are)."""
    wrote = generate_toy_panoptic(root, params, force)
    return generate_toy_open_vocab(root, params, force=force or wrote) or wrote
