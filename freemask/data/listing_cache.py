"""Cached listings of large dataset folders, so that a job's ranks (and the next job) do not each re-list them.

A FreeMask synthetic folder holds 400k (ADE20K-Synthetic) or 710k (COCO-Synthetic) files; every rank of every job
used to list it. :func:`list_files` keeps the names of a folder's files in a JSON file of the cache folder
(``$FREEMASK_CACHE_DIR``, else ``$XDG_CACHE_HOME/freemask``, else ``~/.cache/freemask``; subfolder ``listings/``),
one file per folder named by a hash of the folder's real path. Nothing is ever written into a dataset folder.

Validity. A cache file is used only while the folder's stat is the one it was listed under: device, inode,
modification and change times (``st_mtime_ns``, ``st_ctime_ns``). A folder's mtime changes whenever an entry is
added, removed or renamed in it; its ctime also changes then, and cannot be set back by ``touch``/``rsync -t``. As git
does for its index ("racy git", git/git, Documentation/technical/racy-git.txt), a listing is trusted only when the
folder was last modified clearly before the listing started (``RACY_MARGIN_NS``, above the 2 s timestamp granularity
of the coarsest file systems): a change made during or just after the listing, within one timestamp tick, could
otherwise leave the stat as it was and the cache stale forever. Such a folder is listed directly until it is older.

Limits. File systems whose folders keep a fixed mtime (some object-store FUSE mounts) cannot be cached safely: set
``FREEMASK_LISTING_CACHE=0`` there. Which entries are files is decided when listing (symlinks followed); a symlink
whose target later disappears is still listed, as a direct listing made before the change would be.

Failures. An unwritable cache folder or a corrupt cache file is never an error: one warning, then the folder is
listed directly (and a corrupt file is replaced). Files are written atomically (:mod:`freemask.utils.atomic`), so
ranks reading while another writes see the old file or the new one, never a half file.
"""

import hashlib
import json
import logging
import os
import time
from typing import List, Optional, Set, Tuple

from ..errors import OutputWriteError
from ..utils.atomic import atomic_write_json, remove_stale_temporaries

logger = logging.getLogger(__name__)

CACHE_DIR_ENV = "FREEMASK_CACHE_DIR"
DISABLE_ENV = "FREEMASK_LISTING_CACHE"
LISTINGS_SUBDIR = "listings"
# Folders with fewer files are listed directly: a few milliseconds, less than reading and checking a cache file.
MIN_CACHED_ENTRIES = 4096
# A folder modified less than this before a listing started is not cached (the racy case in the module docstring).
RACY_MARGIN_NS = 3_000_000_000
FORMAT_VERSION = 1

# Cache folders and files already warned about: one warning each per process, not one per folder listed.
_warned: Set[str] = set()

StatKey = Tuple[int, int, int, int]


def cache_dir() -> str:
    """The cache folder of this user, read from the environment at each call (tests and users may change it)."""
    explicit = os.environ.get(CACHE_DIR_ENV)
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "freemask")


def cache_file(real_folder: str) -> str:
    """Where the listing of ``real_folder`` (a real path) is kept."""
    digest = hashlib.sha256(os.fsencode(real_folder)).hexdigest()[:40]
    return os.path.join(cache_dir(), LISTINGS_SUBDIR, digest + ".json")


def _stat_key(folder: str) -> StatKey:
    st = os.stat(folder)
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)


def scan_files(folder: str) -> List[str]:
    """Names of the files directly in ``folder`` (``DirEntry.is_file()``: symlinks to files count), in the order
    the file system gives them."""
    with os.scandir(folder) as entries:
        return [e.name for e in entries if e.is_file()]


def _warn_once(key: str, message: str, *args: object) -> None:
    if key not in _warned:
        _warned.add(key)
        logger.warning(message, *args)


def _read(path: str, real_folder: str, key: StatKey) -> Optional[List[str]]:
    """The cached names when ``path`` holds a listing of ``real_folder`` under stat ``key``; None when it is absent,
    of another state of the folder (stale), or corrupt (warned: it will be replaced)."""
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read())
    except (FileNotFoundError, NotADirectoryError):  # not cached yet, or no cache folder (warned when writing)
        return None
    except OSError as e:
        _warn_once(os.path.dirname(path), "Listing cache %s unreadable (%s); listing %s directly", path, e,
                   real_folder)  # fmt: skip
        return None
    except ValueError as e:
        _warn_once(path, "Listing cache %s is corrupt (%s); listing %s directly and replacing it", path, e,
                   real_folder)  # fmt: skip
        return None
    try:
        stored = (data["dev"], data["ino"], data["mtime_ns"], data["ctime_ns"])
        names, folder, listed_at = data["names"], data["folder"], data["listed_at_ns"]
        valid = (
            data["version"] == FORMAT_VERSION
            and isinstance(names, list)
            and "/" not in "".join(names)  # join raises TypeError unless every name is a string
            and isinstance(listed_at, int)
        )
    except (KeyError, TypeError):
        valid = False
    if not valid:
        _warn_once(path, "Listing cache %s is corrupt; listing %s directly and replacing it", path, real_folder)
        return None
    if folder != real_folder or tuple(stored) != key or key[2] >= listed_at - RACY_MARGIN_NS:
        return None
    return names


def _write(path: str, real_folder: str, key: StatKey, listed_at: int, names: List[str]) -> None:
    record = {
        "version": FORMAT_VERSION,
        "folder": real_folder,
        "dev": key[0],
        "ino": key[1],
        "mtime_ns": key[2],
        "ctime_ns": key[3],
        "listed_at_ns": listed_at,
        "names": names,
    }
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
        remove_stale_temporaries(folder)  # a rank killed mid-write leaves a temporary as large as the listing
        atomic_write_json(path, record, indent=None)
    except (OSError, OutputWriteError) as e:
        _warn_once(folder, "Listing cache folder %s not writable (%s); large folders are listed directly (set %s "
                   "to a writable folder)", folder, e, CACHE_DIR_ENV)  # fmt: skip


def list_files(folder: str) -> List[str]:
    """Names of the files directly in ``folder``, as :func:`scan_files` gives them, from the cache when the folder
    has not changed since it was cached. Raises what ``os.scandir`` raises for a missing folder (callers check
    first and raise their own DatasetError)."""
    if os.environ.get(DISABLE_ENV, "1") == "0":
        return scan_files(folder)
    real = os.path.realpath(folder)
    key = _stat_key(real)
    path = cache_file(real)
    cached = _read(path, real, key)
    if cached is not None:
        return cached
    listed_at = time.time_ns()
    names = scan_files(real)
    if (
        len(names) >= MIN_CACHED_ENTRIES
        and key[2] < listed_at - RACY_MARGIN_NS
        and _stat_key(real) == key  # unchanged while listing
    ):
        _write(path, real, key, listed_at, names)
    return names
