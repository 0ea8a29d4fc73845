"""The synthetic images' sizes, kept in the output folder with the rest of the filter's resume state.

The batch plan is a pure function of every image's size (:mod:`.batches`), so a run must know all of them before its
first batch: reading 400k image headers takes minutes. The first run saves them to ``.filter_sizes.json`` and a
resumed run reads them from there instead of from the images. The file records which image list it describes (a
digest of the paths, in order): a run over another list (images added, removed or renamed, or the dataset read from
another place) reads the headers again and replaces it. ``--overwrite`` removes it with the rest of the state.

``.filter_sizes.json`` (UTF-8 JSON): ``{"format": "freemask.filter_sizes/1", "images": N, "paths_sha256": digest,
"runs": [[H, W, count], ...]}``: the sizes in file-list order, consecutive equal sizes stored as one run (a synthetic
set of one size is one line).
"""

import hashlib
import json
import os
from typing import List, Optional, Sequence, Tuple

from ...utils.atomic import atomic_write_json

SIZES_NAME = ".filter_sizes.json"
SIZES_FORMAT = "freemask.filter_sizes/1"
Size = Tuple[int, int]


def paths_digest(paths: Sequence[str]) -> str:
    """sha256 of the paths in order (each ended by a NUL byte, which no path contains)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(os.fsencode(path) + b"\0")
    return digest.hexdigest()


def _runs(sizes: Sequence[Size]) -> List[List[int]]:
    runs: List[List[int]] = []
    for height, width in sizes:
        if runs and runs[-1][0] == height and runs[-1][1] == width:
            runs[-1][2] += 1
        else:
            runs.append([height, width, 1])
    return runs


def write_sizes(output: str, paths: Sequence[str], sizes: Sequence[Size]) -> None:
    """Save ``sizes`` (one per path of ``paths``) in ``output``, atomically."""
    if len(paths) != len(sizes):
        raise ValueError(f"{len(sizes)} sizes for {len(paths)} paths")
    content = {"format": SIZES_FORMAT, "images": len(paths), "paths_sha256": paths_digest(paths), "runs": _runs(sizes)}
    atomic_write_json(os.path.join(output, SIZES_NAME), content, indent=None)


def read_sizes(output: str, paths: Sequence[str]) -> Optional[List[Size]]:
    """The sizes saved in ``output`` when they describe exactly ``paths`` (same paths, same order); None otherwise
    (no file, another list, or a file this version cannot read: the headers are then read again)."""
    try:
        with open(os.path.join(output, SIZES_NAME), encoding="utf-8") as f:
            content = json.load(f)
        if content["format"] != SIZES_FORMAT or content["images"] != len(paths):
            return None
        sizes = [(int(h), int(w)) for h, w, count in content["runs"] for _ in range(count)]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if len(sizes) != len(paths) or content["paths_sha256"] != paths_digest(paths):
        return None
    return sizes
