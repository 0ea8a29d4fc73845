"""The generator's output root: pair files, which pairs are finished, and ``generation_manifest.json``.

Layout (an ``ADE20K_Synthetic``-style root, read unchanged by the ``*_syn_*`` splits and ``tools/filter_syn.py``)::

    ROOT/images/<stem>_seed_<s>.jpg        RGB, JPEG quality ``jpeg_quality`` (95 by default), 4:2:0, OpenCV encoder
    ROOT/annotations/<stem>_seed_<s>.png   the real mask at the image's resolution (nearest), single channel
    ROOT/generation_manifest.json          settings every pair of the folder was made with, and the pairs

Both files of a pair are written atomically (``freemask.utils.atomic``), the image first: a pair is finished when
its mask exists, so a run killed anywhere leaves only finished pairs or a lone image that the next run redoes.

Why the manifest holds the settings rather than a per-pair log: every setting that changes pixels is the same for
all pairs of a folder (a re-run with other settings is refused), so one record at the top describes them all, and
the files themselves say which pairs exist. The manifest is written before the first pair (settings, pairs so far)
and again at the end (every finished pair), sorted and without times, so a resumed run ends with the same bytes as
an uninterrupted one.
"""

import json
import os
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple

import cv2
import numpy as np

from ..data.datasets.synthetic import IMAGES_DIR, MASKS_DIR, parse_synthetic_stem
from ..errors import UserError
from ..utils.atomic import atomic_write_bytes, atomic_write_json, remove_stale_temporaries

MANIFEST_NAME = "generation_manifest.json"
MANIFEST_FORMAT = "freemask.generation_manifest/1"
IMAGE_EXT = ".jpg"
MASK_EXT = ".png"

Pair = Tuple[str, int]


class OutputSettingsError(UserError, RuntimeError):
    """The output root holds pairs made with other (or unknown) settings; the message says which and the fix."""


def pair_name(stem: str, seed: int) -> str:
    return f"{stem}_seed_{seed}"


def image_path(root: str, stem: str, seed: int) -> str:
    return os.path.join(root, IMAGES_DIR, pair_name(stem, seed) + IMAGE_EXT)


def mask_path(root: str, stem: str, seed: int) -> str:
    return os.path.join(root, MASKS_DIR, pair_name(stem, seed) + MASK_EXT)


def prepare_root(root: str) -> int:
    """Create ``images/`` and ``annotations/``; remove temporaries of killed runs; returns how many were removed."""
    removed = 0
    for sub in (IMAGES_DIR, MASKS_DIR):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
        removed += remove_stale_temporaries(os.path.join(root, sub))
    return removed


def _pairs_in(folder: str, ext: str) -> Set[Pair]:
    if not os.path.isdir(folder):
        return set()
    with os.scandir(folder) as entries:
        names = [e.name[: -len(ext)] for e in entries if e.name.endswith(ext) and e.is_file()]
    return {parsed for parsed in map(parse_synthetic_stem, names) if parsed is not None}


def finished_pairs(root: str) -> Set[Pair]:
    """Pairs whose image and mask both exist (one listing per folder)."""
    return _pairs_in(os.path.join(root, IMAGES_DIR), IMAGE_EXT) & _pairs_in(os.path.join(root, MASKS_DIR), MASK_EXT)


def any_pair_files(root: str) -> Set[Pair]:
    """Pairs with an image or a mask in ``root`` (finished or not)."""
    return _pairs_in(os.path.join(root, IMAGES_DIR), IMAGE_EXT) | _pairs_in(os.path.join(root, MASKS_DIR), MASK_EXT)


def remove_pairs(root: str, pairs: Iterable[Pair]) -> None:
    """--overwrite: delete the files of ``pairs`` (whichever exist)."""
    for stem, seed in pairs:
        for path in (image_path(root, stem, seed), mask_path(root, stem, seed)):
            if os.path.exists(path):
                os.remove(path)


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    """JPEG bytes of an ``(H, W, 3)`` uint8 RGB image (OpenCV: deterministic, the same bytes on every run)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.dtype} {image.shape}")
    ok, data = cv2.imencode(IMAGE_EXT, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OSError(f"JPEG encoding failed for an image of shape {image.shape}")
    return data.tobytes()


def encode_png(mask: np.ndarray) -> bytes:
    """Lossless PNG bytes of a single-channel uint8/uint16 label map."""
    ok, data = cv2.imencode(MASK_EXT, mask)
    if not ok:
        raise OSError(f"PNG encoding failed for a {mask.dtype} mask of shape {mask.shape}")
    return data.tobytes()


def write_pair(root: str, stem: str, seed: int, image: np.ndarray, mask: np.ndarray, jpeg_quality: int) -> None:
    """Image first, then mask, each atomically: the mask's presence marks the pair finished."""
    atomic_write_bytes(image_path(root, stem, seed), encode_jpeg(image, jpeg_quality))
    atomic_write_bytes(mask_path(root, stem, seed), encode_png(mask))


def read_manifest(root: str) -> Optional[Dict[str, Any]]:
    """The manifest of ``root``, None when there is none; OutputSettingsError when it cannot be read."""
    path = os.path.join(root, MANIFEST_NAME)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise OutputSettingsError(f"{path} is not readable ({e}); delete it and pass --overwrite") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise OutputSettingsError(f"{path} is not a {MANIFEST_FORMAT} file; choose another --output")
    return manifest


def write_manifest(root: str, settings: Dict[str, Any], pairs: Iterable[Pair]) -> None:
    """Settings and the finished pairs (``{stem: [seeds]}``, sorted), atomically."""
    by_stem: Dict[str, List[int]] = {}
    for stem, seed in sorted(set(pairs)):
        by_stem.setdefault(stem, []).append(seed)
    manifest = {
        "format": MANIFEST_FORMAT,
        "settings": settings,
        "num_pairs": sum(len(s) for s in by_stem.values()),
        "pairs": by_stem,
    }
    atomic_write_json(os.path.join(root, MANIFEST_NAME), manifest, sort_keys=True)


def check_settings(root: str, manifest: Optional[Dict[str, Any]], settings: Dict[str, Any], present: int) -> None:
    """OutputSettingsError when ``root`` holds pairs made with other settings than ``settings`` (``present``: how
    many pair files it holds; pairs without a manifest were made with unknown settings)."""
    if manifest is None:
        if present:
            raise OutputSettingsError(
                f"{root} holds {present} pairs but no {MANIFEST_NAME}, so their settings are unknown; choose another "
                f"--output, or pass --overwrite to replace them"
            )
        return
    previous = manifest.get("settings", {})
    differ = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
    if differ:
        shown = "; ".join(f"{k}: {previous.get(k)!r} -> {settings.get(k)!r}" for k in differ)
        raise OutputSettingsError(
            f"{root} holds pairs generated with other settings ({shown}); pass --overwrite to redo them, or choose "
            f"another --output"
        )
