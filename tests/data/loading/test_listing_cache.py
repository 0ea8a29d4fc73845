"""freemask.data.loading.listing_cache: a cached listing is os.listdir's files after every change, is reused while the
folder is unchanged, is never trusted in the racy case, and survives an unwritable or corrupt cache with one warning."""

import json
import logging
import os
import time

import pytest

from freemask.data.loading import listing_cache

OLD_NS = 1_600_000_000 * 10**9  # a folder modified long before any listing in these tests


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache folder; every folder with one file or more is cached."""
    folder = tmp_path / "cache"
    monkeypatch.setenv(listing_cache.CACHE_DIR_ENV, str(folder))
    monkeypatch.delenv(listing_cache.DISABLE_ENV, raising=False)
    monkeypatch.setattr(listing_cache, "MIN_CACHED_ENTRIES", 1)
    monkeypatch.setattr(listing_cache, "_warned", set())
    return folder


@pytest.fixture
def scans(monkeypatch):
    """The folders listed in full since the test started (a large folder's first files, read to tell it is large,
    are not a listing)."""
    calls = []
    real_scan_files = listing_cache.scan_files

    def counting(folder):
        calls.append(os.path.realpath(folder))
        return real_scan_files(folder)

    monkeypatch.setattr(listing_cache, "scan_files", counting)
    return calls


def make_folder(path, names, age_s=0):
    """``path`` holding empty files ``names`` and one subfolder (not a file, so never listed), its mtime set
    ``age_s`` seconds after OLD_NS."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "a_subfolder.jpg").mkdir(exist_ok=True)
    for name in names:
        (path / name).write_bytes(b"")
    age(path, age_s)
    return path


def age(path, offset_s):
    """Set the folder's mtime into the past (its ctime still moves to now): a listing of it is not racy."""
    os.utime(path, ns=(OLD_NS + offset_s * 10**9, OLD_NS + offset_s * 10**9))


def files(path):
    return sorted(n for n in os.listdir(path) if os.path.isfile(os.path.join(path, n)))


def test_unchanged_folder_is_read_from_the_cache(tmp_path, cache, scans):
    folder = make_folder(tmp_path / "images", [f"{i}.jpg" for i in range(5)])
    first = listing_cache.list_files(str(folder))
    assert sorted(first) == files(folder) and len(first) == 5
    assert scans == [str(folder)]
    assert os.path.isfile(listing_cache.cache_file(str(folder)))
    assert sorted(os.listdir(folder)) == ["0.jpg", "1.jpg", "2.jpg", "3.jpg", "4.jpg", "a_subfolder.jpg"]  # untouched
    assert listing_cache.list_files(str(folder)) == first
    assert listing_cache.list_files(str(folder) + "/") == first  # the same folder by another spelling
    assert scans == [str(folder)]  # no second listing


def test_each_change_re_lists(tmp_path, cache, scans):
    folder = make_folder(tmp_path / "images", ["a.jpg", "b.jpg", "c.jpg"])
    changes = [
        lambda: (folder / "d.jpg").write_bytes(b""),  # added
        lambda: os.remove(folder / "a.jpg"),  # removed
        lambda: os.rename(folder / "b.jpg", folder / "b2.jpg"),  # renamed
    ]
    assert sorted(listing_cache.list_files(str(folder))) == ["a.jpg", "b.jpg", "c.jpg"]
    for step, change in enumerate(changes, 1):
        change()
        age(folder, step)  # a distinct, old mtime per state
        assert sorted(listing_cache.list_files(str(folder))) == files(folder)
        assert len(scans) == step + 1  # re-listed
        assert sorted(listing_cache.list_files(str(folder))) == files(folder)
        assert len(scans) == step + 1  # and cached again
    assert files(folder) == ["b2.jpg", "c.jpg", "d.jpg"]


def test_a_change_that_keeps_the_mtime_re_lists(tmp_path, cache, scans):
    """``touch -d`` / ``rsync -t`` may set a changed folder's mtime back; its ctime still moves."""
    folder = make_folder(tmp_path / "images", ["a.jpg"])
    assert listing_cache.list_files(str(folder)) == ["a.jpg"]
    time.sleep(0.01)  # ctime ticks are nanoseconds here, but never equal across a sleep
    (folder / "b.jpg").write_bytes(b"")
    age(folder, 0)  # the mtime it was cached under
    assert sorted(listing_cache.list_files(str(folder))) == ["a.jpg", "b.jpg"]
    assert len(scans) == 2


def test_a_folder_modified_just_before_the_listing_is_not_cached(tmp_path, cache, scans):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"")  # mtime: now, within the racy margin
    assert listing_cache.list_files(str(folder)) == ["a.jpg"]
    assert not os.path.exists(listing_cache.cache_file(str(folder)))
    assert not cache.exists()  # nor a lock: waiting for another process's listing would gain nothing
    listing_cache.list_files(str(folder))
    assert len(scans) == 2


def test_a_racy_cache_file_is_not_trusted(tmp_path, cache, scans):
    """A cache file listed within the margin of the folder's mtime (written by an older version, or by hand) could
    miss a change made in the same timestamp tick: the folder is listed again."""
    folder = make_folder(tmp_path / "images", ["a.jpg"])
    st = os.stat(folder)
    path = listing_cache.cache_file(str(folder))
    os.makedirs(os.path.dirname(path))
    with open(path, "w") as f:
        json.dump({"version": listing_cache.FORMAT_VERSION, "folder": str(folder), "dev": st.st_dev,
                   "ino": st.st_ino, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns,
                   "listed_at_ns": st.st_mtime_ns + 1, "names": ["stale.jpg"]}, f)  # fmt: skip
    assert listing_cache.list_files(str(folder)) == ["a.jpg"]
    assert len(scans) == 1


def test_a_folder_changed_while_listed_is_not_cached(tmp_path, cache, monkeypatch):
    folder = make_folder(tmp_path / "images", ["a.jpg"])
    real_scandir = os.scandir
    changes = []

    def scandir_then_change(path):
        entries = real_scandir(path)
        changes.append(1)
        (folder / f"late{len(changes)}.jpg").write_bytes(b"")  # a rank writing while this one lists
        age(folder, len(changes))
        return entries

    monkeypatch.setattr(os, "scandir", scandir_then_change)
    listing_cache.list_files(str(folder))
    assert not os.path.exists(listing_cache.cache_file(str(folder)))


def test_small_folders_and_the_opt_out_write_no_cache(tmp_path, cache, monkeypatch):
    folder = make_folder(tmp_path / "images", ["a.jpg", "b.jpg"])
    monkeypatch.setattr(listing_cache, "MIN_CACHED_ENTRIES", 3)
    assert sorted(listing_cache.list_files(str(folder))) == ["a.jpg", "b.jpg"]
    monkeypatch.setattr(listing_cache, "MIN_CACHED_ENTRIES", 1)
    monkeypatch.setenv(listing_cache.DISABLE_ENV, "0")
    assert sorted(listing_cache.list_files(str(folder))) == ["a.jpg", "b.jpg"]
    assert not cache.exists()


def test_cache_folder_defaults(monkeypatch, tmp_path):
    monkeypatch.delenv(listing_cache.CACHE_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert listing_cache.cache_dir() == str(tmp_path / "xdg" / "freemask")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert listing_cache.cache_dir() == str(tmp_path / "home" / ".cache" / "freemask")
    monkeypatch.setenv(listing_cache.CACHE_DIR_ENV, str(tmp_path / "mine"))
    assert listing_cache.cache_file("/data/x").startswith(str(tmp_path / "mine" / "listings") + os.sep)
    assert listing_cache.cache_file("/data/x") != listing_cache.cache_file("/data/y")


def test_unwritable_cache_warns_once_and_lists(tmp_path, cache, monkeypatch, caplog):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv(listing_cache.CACHE_DIR_ENV, str(blocker / "cache"))  # under a file: never creatable
    folders = [make_folder(tmp_path / name, ["a.jpg", "b.jpg"]) for name in ("images", "masks")]
    with caplog.at_level(logging.WARNING, logger="freemask"):
        for folder in folders * 2:
            assert sorted(listing_cache.list_files(str(folder))) == ["a.jpg", "b.jpg"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "not writable" in warnings[0].getMessage()


@pytest.mark.parametrize(
    "content",
    [b'{"version": 1, "names": ["a.jp', b"\x00\xff", b'{"version": 1, "names": "a.jpg"}', b"[1, 2]",
     b'{"version": 1, "folder": "", "dev": 0, "ino": 0, "mtime_ns": 0, "ctime_ns": 0, "listed_at_ns": 9, '
     b'"names": ["../escape.jpg"]}',
     b'{"version": 1, "folder": "", "dev": 0, "ino": 0, "mtime_ns": 0, "ctime_ns": 0, "listed_at_ns": 9, '
     b'"names": ["a.jpg", 3]}'],  # fmt: skip
    ids=["truncated", "binary", "names-not-a-list", "not-an-object", "name-with-slash", "name-not-a-string"],
)
def test_corrupt_cache_warns_lists_and_is_replaced(tmp_path, cache, scans, caplog, content):
    folder = make_folder(tmp_path / "images", ["a.jpg", "b.jpg"])
    path = listing_cache.cache_file(str(folder))
    os.makedirs(os.path.dirname(path))
    with open(path, "wb") as f:
        f.write(content)
    with caplog.at_level(logging.WARNING, logger="freemask"):
        assert sorted(listing_cache.list_files(str(folder))) == ["a.jpg", "b.jpg"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and path in warnings[0]
    with open(path) as f:
        assert sorted(json.load(f)["names"]) == ["a.jpg", "b.jpg"]  # replaced
    assert sorted(listing_cache.list_files(str(folder))) == ["a.jpg", "b.jpg"]
    assert len(scans) == 1  # the replacement is used
