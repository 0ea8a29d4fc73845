"""Where a re-sampling plan goes: a manifest of the chosen pairs (default), or folders of copies or symlinks.

The manifest is what the ``*_syn_resampled_*`` splits read: no file is duplicated. ``--copy`` / ``--symlink`` build
``<dir>/images`` and ``<dir>/annotations`` for users who want folders (other tools, the release's configs), plus a
manifest in ``<dir>`` so the folder is itself a synthetic root. Each file is written under a temporary name and
renamed, so an interrupted run leaves no partial file and a re-run skips what exists; an existing file that is not
what this run would write (another source, e.g. unfiltered masks) is an error, never overwritten or silently kept.
"""

import contextlib
import os
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ...data.datasets.synthetic import IMAGES_DIR, MANIFEST_NAME, MASKS_DIR
from ...data.errors import DatasetError
from ...utils.atomic import atomic_path
from ..sources import SyntheticPairs
from .plan import ResamplePlan

# Files per thread-pool task.
_CHUNK = 64


def manifest_path(output: str | None, folder: str | None, synthetic: SyntheticPairs) -> str:
    """Where the manifest goes: ``output``, else the one the ``*_syn_resampled_*`` splits read in ``folder`` (the
    --copy/--symlink target) or the synthetic root. DatasetError, before the long part, when the manifest could not
    name the files relative to its folder."""
    path = output or os.path.join(folder or synthetic.root, MANIFEST_NAME)
    base = os.path.dirname(os.path.abspath(path))
    first = next(iter(next(iter(synthetic.pairs.values())).values()))
    targets = [os.path.join(folder, "x")] if folder else first
    if any(os.path.relpath(os.path.abspath(p), base).startswith("..") for p in targets):
        where = folder or f"{os.path.dirname(first[0])} and {os.path.dirname(first[1])}"
        raise DatasetError(
            f"--output {path}: the manifest lists paths relative to its folder, which does not contain {where}; "
            f"put it in a folder that holds the files (default: {MANIFEST_NAME} in the synthetic root or DIR)"
        )
    return path


def chosen_pairs(plan: ResamplePlan, synthetic: SyntheticPairs) -> list[tuple[str, str]]:
    """The ``(image, mask)`` paths chosen by ``plan``, sorted by (real stem, seed)."""
    return [synthetic.pairs[name][seed] for name, seeds in zip(plan.names, plan.chosen) for seed in seeds]


@dataclass(frozen=True)
class MaterialiseResult:
    pairs: list[tuple[str, str]]  # the (image, mask) paths inside the target folder
    written: int
    skipped: int  # files already there (an earlier, interrupted run)
    unlisted: int  # files in the target folders that this plan did not choose (left as they are)


def _already_placed(source: str, target: str, symlink: bool) -> bool:
    """Whether ``target`` exists as what an earlier run of the same choice wrote: a link to ``source``, or a regular
    file of its size (copies are renamed into place whole, so a same-size file is a finished copy)."""
    if not os.path.lexists(target):
        return False
    if symlink:
        same = os.path.islink(target) and os.readlink(target) == os.path.abspath(source)
    else:
        same = not os.path.islink(target) and os.path.getsize(target) == os.path.getsize(source)
    if not same:
        raise DatasetError(
            f"{target} already exists but is not {'a link to' if symlink else 'a copy of'} {source} (another "
            f"selection, or the source folder itself?); pick an empty folder for --copy/--symlink or delete that file"
        )
    return True


def _place(source: str, target: str, symlink: bool) -> bool:
    """Copy or symlink ``source`` to ``target`` atomically; False when an earlier run already placed it."""
    if _already_placed(source, target, symlink):
        return False
    with atomic_path(target) as tmp:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)  # left by a killed run of a process with our pid: a link would not be replaced
        if symlink:
            os.symlink(os.path.abspath(source), tmp)
        else:
            shutil.copyfile(source, tmp)
    return True


def materialise(
    pairs: Sequence[tuple[str, str]],
    folder: str,
    symlink: bool = False,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
) -> MaterialiseResult:
    """Copy (or symlink) ``pairs`` to ``folder/images`` and ``folder/annotations`` under their own file names."""
    targets = {IMAGES_DIR: os.path.join(folder, IMAGES_DIR), MASKS_DIR: os.path.join(folder, MASKS_DIR)}
    for path in targets.values():
        os.makedirs(path, exist_ok=True)
    jobs, placed = [], []
    for image, mask in pairs:
        pair = tuple(os.path.join(targets[d], os.path.basename(p)) for d, p in ((IMAGES_DIR, image), (MASKS_DIR, mask)))
        jobs += [(image, pair[0]), (mask, pair[1])]
        placed.append(pair)

    def run(chunk: Sequence[tuple[str, str]]) -> int:
        done = sum(_place(source, target, symlink) for source, target in chunk)
        if progress:
            progress(len(chunk))
        return done

    chunks = [jobs[i : i + _CHUNK] for i in range(0, len(jobs), _CHUNK)]
    with ThreadPoolExecutor(max(1, workers)) as pool:
        written = sum(pool.map(run, chunks))
    unlisted = 0
    for kind, path in targets.items():
        wanted = {os.path.basename(p[0 if kind == IMAGES_DIR else 1]) for p in placed}
        with os.scandir(path) as entries:
            unlisted += sum(1 for e in entries if not e.name.startswith(".") and e.name not in wanted)
    return MaterialiseResult(placed, written, len(jobs) - written, unlisted)
