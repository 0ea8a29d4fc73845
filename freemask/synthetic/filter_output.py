"""The filter's output folder: atomic file writes, leftovers of killed runs, and the settings a folder was made with.

Every file appears under its final name only once complete (temporary name in the same folder, then ``os.replace``),
so "the mask exists" means "the mask is finished" and a re-run skips it. A re-run must also produce what the
interrupted run would have, so ``.filter_state.json`` remembers the settings the masks were made with (model
weights, margin, batch size, precision, inputs, class losses) and a re-run with other settings stops instead of
mixing two kinds of masks in one folder.
"""

import hashlib
import json
import os
from typing import Dict, Iterable, Optional, Set

import cv2
import numpy as np

from ..errors import UserError

STATE_NAME = ".filter_state.json"
_TMP_SUFFIX = ".tmp"


class OutputStateError(UserError, RuntimeError):
    """The output folder holds results of other settings; the message says which and how to proceed."""


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` via a hidden temporary file in the same folder and a rename."""
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{name}.{os.getpid()}{_TMP_SUFFIX}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_png(path: str, mask: np.ndarray) -> None:
    """Atomically write a single-channel uint8/uint16 label map as PNG (lossless, dtype kept)."""
    ok, encoded = cv2.imencode(".png", mask)
    if not ok:
        raise OSError(f"{path}: PNG encoding failed for a {mask.dtype} mask of shape {mask.shape}")
    atomic_write_bytes(path, encoded.tobytes())


def remove_stale_temporaries(folder: str) -> int:
    """Delete temporary files left by killed runs (``.<name>.<pid>.tmp``); returns how many."""
    removed = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_file() and entry.name.startswith(".") and entry.name.endswith(_TMP_SUFFIX):
                os.remove(entry.path)
                removed += 1
    return removed


def existing_files(folder: str, names: Iterable[str]) -> Set[str]:
    """The subset of ``names`` present in ``folder`` (one listing, not one stat per name)."""
    with os.scandir(folder) as entries:
        present = {e.name for e in entries if e.is_file()}
    return present.intersection(names)


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_state(output: str) -> Optional[Dict]:
    path = os.path.join(output, STATE_NAME)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_state(output: str, state: Dict) -> None:
    data = json.dumps(state, indent=1, sort_keys=True) + "\n"
    atomic_write_bytes(os.path.join(output, STATE_NAME), data.encode("utf-8"))


def check_state(output: str, previous: Optional[Dict], current: Dict) -> None:
    """OutputStateError when ``previous`` (the folder's state) disagrees with ``current`` on a shared key."""
    if not previous:
        return
    differ = sorted(k for k in current if k in previous and previous[k] != current[k])
    if differ:
        shown = "; ".join(f"{k}: {previous[k]!r} -> {current[k]!r}" for k in differ)
        raise OutputStateError(
            f"{output} holds masks filtered with other settings ({shown}); pass --overwrite to redo them, or choose "
            f"another --output"
        )
