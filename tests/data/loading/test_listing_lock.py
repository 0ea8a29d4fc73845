"""freemask.data.loading.listing_cache's per-folder lock: processes asking for the same large uncached folder at once
list it once and all get its names; a killed holder never blocks the others; no lock (cannot be created, no flock, no
fcntl) means a direct listing."""

import errno
import fcntl
import json
import logging
import os
import signal
import time

import pytest

from freemask.data.loading import listing_cache
from freemask.utils.forked_script import warm_forkserver

OLD_NS = 1_600_000_000 * 10**9
NAMES = [f"{i:03d}_seed_0.jpg" for i in range(40)]
MIN_ENTRIES = 4  # the folders of NAMES are large


@pytest.fixture
def folder(tmp_path):
    """A large folder, modified long ago (its listing can be cached), holding NAMES and a subfolder."""
    path = tmp_path / "images"
    (path / "a_subfolder").mkdir(parents=True)
    for name in NAMES:
        (path / name).write_bytes(b"")
    os.utime(path, ns=(OLD_NS, OLD_NS))
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv(listing_cache.CACHE_DIR_ENV, str(folder))
    monkeypatch.delenv(listing_cache.DISABLE_ENV, raising=False)
    monkeypatch.setattr(listing_cache, "MIN_CACHED_ENTRIES", MIN_ENTRIES)
    monkeypatch.setattr(listing_cache, "_warned", set())
    return folder


def _child(cache_dir, folder, marker, out, start_together, hold_s):
    """One process asking for ``folder``'s listing once every process waits at ``start_together`` (a Barrier, or
    None): each full listing appends a line to ``marker`` and then takes ``hold_s`` more seconds (the other
    processes ask meanwhile); the names it got go to ``out``."""
    os.environ[listing_cache.CACHE_DIR_ENV] = cache_dir
    os.environ.pop(listing_cache.DISABLE_ENV, None)
    listing_cache.MIN_CACHED_ENTRIES = MIN_ENTRIES
    real_scan_files = listing_cache.scan_files

    def slow_scan_files(path):
        with open(marker, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(hold_s)
        return real_scan_files(path)

    listing_cache.scan_files = slow_scan_files
    if start_together is not None:
        start_together.wait()
    names = listing_cache.list_files(folder)
    with open(out, "w") as f:
        json.dump(names, f)


def _lock_is_free(cache_dir, folder):
    """Whether the lock of ``folder``'s cache file can be taken now (taken and released at once)."""
    os.environ[listing_cache.CACHE_DIR_ENV] = cache_dir
    fd = os.open(listing_cache.cache_file(os.path.realpath(folder)) + listing_cache.LOCK_SUFFIX, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def listing(path):
    return [n for n in os.listdir(path) if os.path.isfile(os.path.join(path, n))]


def test_processes_asking_at_once_list_a_large_folder_once(tmp_path, cache, folder):
    ctx = warm_forkserver()
    marker = tmp_path / "listings.txt"
    start_together = ctx.Barrier(3)
    outs = [tmp_path / f"names{i}.json" for i in range(3)]
    children = [
        ctx.Process(target=_child, args=(str(cache), str(folder), str(marker), str(out), start_together, 1.0))
        for out in outs
    ]
    for child in children:
        child.start()
    for child in children:
        child.join()
    assert [child.exitcode for child in children] == [0, 0, 0]
    assert len(marker.read_text().split()) == 1  # one process listed; the others waited and read its cache
    results = [json.loads(out.read_text()) for out in outs]
    assert results[0] == results[1] == results[2] == listing(folder)  # the names and their order of a listing
    assert sorted(results[0]) == NAMES


def test_a_killed_lock_holder_does_not_block_the_others(tmp_path, cache, folder, caplog):
    marker = tmp_path / "listings.txt"
    holder = warm_forkserver().Process(
        target=_child, args=(str(cache), str(folder), str(marker), str(tmp_path / "never.json"), None, 600)
    )
    holder.start()
    try:
        while not marker.exists():  # until the holder lists, under the lock
            assert holder.is_alive()
            time.sleep(0.05)
        assert not _lock_is_free(str(cache), str(folder))
    finally:
        holder.kill()
        holder.join()
    assert holder.exitcode == -signal.SIGKILL
    assert _lock_is_free(str(cache), str(folder))  # released by its holder's death
    with caplog.at_level(logging.WARNING, logger="freemask"):
        assert listing_cache.list_files(str(folder)) == listing(folder)
    assert caplog.records == []
    with open(listing_cache.cache_file(str(folder))) as f:
        assert json.load(f)["names"] == listing(folder)  # this process listed and cached it


def test_a_lock_that_cannot_be_created_lists_directly_with_one_warning(tmp_path, cache, folder, monkeypatch, caplog):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv(listing_cache.CACHE_DIR_ENV, str(blocker / "cache"))  # under a file: never creatable
    with caplog.at_level(logging.WARNING, logger="freemask"):
        for _ in range(3):
            assert listing_cache.list_files(str(folder)) == listing(folder)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "not writable" in warnings[0] and listing_cache.CACHE_DIR_ENV in warnings[0]


def test_a_file_system_without_flock_lists_directly_with_one_warning(cache, folder, monkeypatch, caplog):
    def no_flock(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(listing_cache.fcntl, "flock", no_flock)
    with caplog.at_level(logging.WARNING, logger="freemask"):
        for _ in range(3):
            assert listing_cache.list_files(str(folder)) == listing(folder)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "cannot be locked" in warnings[0] and "No locks available" in warnings[0]


def test_without_fcntl_large_folders_are_listed_and_cached_without_a_lock(cache, folder, monkeypatch, caplog):
    monkeypatch.setattr(listing_cache, "fcntl", None)  # as on Windows
    with caplog.at_level(logging.WARNING, logger="freemask"):
        assert listing_cache.list_files(str(folder)) == listing(folder)
    assert caplog.records == []
    path = listing_cache.cache_file(str(folder))
    assert os.path.isfile(path) and not os.path.exists(path + listing_cache.LOCK_SUFFIX)
