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

Sharing. A job's ranks, and tools started at the same time, ask for the same folders at once. The first process
that finds a large folder uncached takes an exclusive lock on ``<cache file>.lock`` (``fcntl.flock``), checks the
cache again (another process may have filled it while this one waited), lists and writes the cache if still needed,
then releases the lock; the others wait on the lock and read the cache. So each folder is listed once, with no
collective: record building runs in parallel on every rank, and processes that never call torch.distributed share
the listing too. The lock dies with its holder (the kernel releases a flock when the last descriptor of its open file
is closed, as when the process dies), so a killed process never blocks the others. Whether a folder is large is known
by reading its first ``MIN_CACHED_ENTRIES`` files: small folders are listed entirely by then and take no lock; nor
do racy ones (never cached: waiting would gain nothing). Should a holder fail to write the cache (the folder changed
while listed, a full disk), the waiters list in turn. Lock files stay in the cache folder (deleting one would let two
processes lock two different files of the same name).

Failures. An unwritable cache folder, a cache folder on a file system without flock (some network file systems) or
a corrupt cache file is never an error: one warning, then the folder is listed directly (and a corrupt file is
replaced). Without ``fcntl`` (Windows) large folders are listed and cached without a lock. Files are written
atomically (:mod:`freemask.utils.atomic`), so processes reading while another writes see the old file or the new
one, never a half file.
"""

import contextlib
import hashlib
import itertools
import json
import logging
import os
import time
from typing import Iterator, List, Optional, Set, Tuple

try:
    import fcntl
except ImportError:  # Windows: no flock; large folders are listed without a lock
    fcntl = None

from ...errors import OutputWriteError
from ...utils.atomic import atomic_write_json, remove_stale_temporaries

logger = logging.getLogger(__name__)

CACHE_DIR_ENV = "FREEMASK_CACHE_DIR"
DISABLE_ENV = "FREEMASK_LISTING_CACHE"
LISTINGS_SUBDIR = "listings"
LOCK_SUFFIX = ".lock"
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


def _first_files(folder: str, limit: int) -> List[str]:
    """The first ``limit`` of :func:`scan_files`'s names (all of them when the folder holds fewer)."""
    with os.scandir(folder) as entries:
        return list(itertools.islice((e.name for e in entries if e.is_file()), limit))


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
        _warn_unwritable(folder, e)


def _warn_unwritable(folder: str, error: Exception) -> None:
    _warn_once(folder, "Listing cache folder %s not writable (%s); large folders are listed directly (set %s to a "
               "writable folder)", folder, error, CACHE_DIR_ENV)  # fmt: skip


def _open_lock(path: str) -> Optional[int]:
    """A descriptor of cache file ``path``'s lock file, created if needed; None when it cannot be (warned)."""
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
        return os.open(path + LOCK_SUFFIX, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        _warn_unwritable(folder, e)
        return None


def _lock(fd: int, folder: str) -> bool:
    """Wait for the exclusive lock of ``fd`` (while another process lists the folder); False when the file system
    has no flock (warned)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return True
    except OSError as e:  # ENOLCK, EOPNOTSUPP
        _warn_once(folder, "Listing cache folder %s cannot be locked (%s); each process lists large folders itself "
                   "(set %s to a local folder)", folder, e, CACHE_DIR_ENV)  # fmt: skip
        return False


@contextlib.contextmanager
def _exclusive(path: str) -> Iterator[bool]:
    """Hold the lock of cache file ``path`` for the block; yields whether it is held (False without fcntl or when
    the lock file cannot be created or locked: the caller goes on without it)."""
    fd = _open_lock(path) if fcntl is not None else None
    if fd is None:
        yield False
        return
    try:
        yield _lock(fd, os.path.dirname(path))
    finally:
        os.close(fd)  # releases the lock


def _list_and_cache(real: str, path: str) -> List[str]:
    """List ``real`` and cache the names when the listing can be trusted (not racy, folder unchanged meanwhile)."""
    key = _stat_key(real)
    listed_at = time.time_ns()
    names = scan_files(real)
    if (
        len(names) >= MIN_CACHED_ENTRIES
        and key[2] < listed_at - RACY_MARGIN_NS
        and _stat_key(real) == key  # unchanged while listing
    ):
        _write(path, real, key, listed_at, names)
    return names


def list_files(folder: str) -> List[str]:
    """Names of the files directly in ``folder``, as :func:`scan_files` gives them, from the cache when the folder
    has not changed since it was cached; a large uncached folder is listed by one process at a time (module
    docstring), so concurrent callers list it once. Raises what ``os.scandir`` raises for a missing folder (callers
    check first and raise their own DatasetError)."""
    if os.environ.get(DISABLE_ENV, "1") == "0":
        return scan_files(folder)
    real = os.path.realpath(folder)
    key = _stat_key(real)
    path = cache_file(real)
    cached = _read(path, real, key)
    if cached is not None:
        return cached
    first = _first_files(real, MIN_CACHED_ENTRIES)
    if len(first) < MIN_CACHED_ENTRIES:
        return first  # the whole folder: small, never cached, no lock
    if key[2] >= time.time_ns() - RACY_MARGIN_NS:
        return scan_files(real)  # racy: will not be cached, so waiting for another process's listing is useless
    with _exclusive(path) as locked:
        if locked:
            cached = _read(path, real, _stat_key(real))  # another process may have cached it while this one waited
            if cached is not None:
                return cached
        return _list_and_cache(real, path)
