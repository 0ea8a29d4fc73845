"""The dataset loaders give the same records (same dicts, same key order, same list order) with the listing cache off,
filling it and reading it, equal to the records of the pre-cache loaders, re-implemented here (regex parse, tuple
sort, os.path.join, os.listdir + isfile)."""

import os
import random
import re

import pytest

from freemask.data.datasets.open_vocab_register import load_prepared_sem_seg
from freemask.data.datasets.sem_seg import load_sem_seg
from freemask.data.datasets.synthetic import (
    _sorted_by_stem_and_seed,
    load_resampled,
    load_synthetic,
    parse_synthetic_stem,
    write_manifest,
)
from freemask.data.loading import listing_cache

OLD_NS = 1_600_000_000 * 10**9
OLD_STEM = re.compile(r"(?P<real_stem>.+)_seed_(?P<seed>\d+)")  # the parser before the listing cache
# Ties and traps for the sort and the parse: equal (stem, seed) from "01" and "1", a seed above 2**30, a non-ASCII
# decimal digit ("٣", seed 3), "_seed_" inside the real stem, upper before lower case, names that are no pair.
STEMS = ["a_seed_9", "a_seed_42", "a_seed_100", "a_seed_01", "a_seed_1", "a_seed_\u0663", "x_seed_1_seed_7", "b_seed_3",
         "B_seed_3", "\u00e9_seed_2", "a_seed_99999999999999999999", "preview", "a_seed_x", "_seed_4"]  # fmt: skip


def old_parse(stem):
    match = OLD_STEM.fullmatch(stem)
    return (match["real_stem"], int(match["seed"])) if match else None


def old_files(folder):
    return [n for n in os.listdir(folder) if os.path.isfile(os.path.join(folder, n))]


def old_synthetic(root, masks_dir, reduce_zero_label):
    image_root, mask_root = os.path.join(root, "images"), os.path.join(root, masks_dir)
    found = [(old_parse(n[:-4]), n[:-4]) for n in old_files(image_root) if n.endswith(".jpg")]
    return [
        {"file_name": os.path.join(image_root, stem + ".jpg"),
         "sem_seg_file_name": os.path.join(mask_root, stem + ".png"),
         "reduce_zero_label": reduce_zero_label, "real_stem": parsed[0], "seed": parsed[1]}  # fmt: skip
        for parsed, stem in sorted(f for f in found if f[0])
    ]


def old_sem_seg(image_root, mask_root):
    stems = sorted(n[:-4] for n in old_files(image_root) if n.endswith(".jpg"))
    return [
        {"file_name": os.path.join(image_root, s + ".jpg"), "sem_seg_file_name": os.path.join(mask_root, s + ".png"),
         "reduce_zero_label": False}  # fmt: skip
        for s in stems
    ]


def ordered(records):
    """Records as lists of (key, value) pairs: equal only with the same keys in the same order."""
    return [list(r.items()) for r in records]


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv(listing_cache.CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(listing_cache.DISABLE_ENV, raising=False)
    monkeypatch.setattr(listing_cache, "MIN_CACHED_ENTRIES", 1)
    root = tmp_path / "ADE20K_Synthetic"
    for sub, ext in (("images", ".jpg"), ("annotations", ".png"), ("annotations_filtered", ".png")):
        (root / sub).mkdir(parents=True)
        (root / sub / "d_seed_5.jpg").mkdir()  # a folder, not a file: never a record
        for stem in STEMS:
            (root / sub / (stem + ext)).write_bytes(b"")
        (root / sub / "readme.txt").write_bytes(b"")
        os.utime(root / sub, ns=(OLD_NS, OLD_NS))  # old enough to be cached
    return str(root)


def three_ways(load, monkeypatch):
    """``load()``'s records with the cache off, filling it, and read from it (no folder listed then)."""
    monkeypatch.setenv(listing_cache.DISABLE_ENV, "0")
    direct = load()
    monkeypatch.delenv(listing_cache.DISABLE_ENV)
    filling = load()
    listed = []
    real_scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda path: listed.append(path) or real_scandir(path))
    reading = load()
    assert [p for p in listed if "cache" not in p] == []
    return direct, filling, reading


@pytest.mark.parametrize("masks_dir", ["annotations", "annotations_filtered"])
def test_synthetic_records_are_the_old_ones_with_and_without_the_cache(root, monkeypatch, masks_dir):
    expected = ordered(old_synthetic(root, masks_dir, True))
    assert [r[1][1] for r in expected[:3]] == [os.path.join(root, masks_dir, "B_seed_3.png"),
                                               os.path.join(root, masks_dir, "a_seed_01.png"),
                                               os.path.join(root, masks_dir, "a_seed_1.png")]  # fmt: skip
    for records in three_ways(lambda: load_synthetic(root, masks_dir, reduce_zero_label=True), monkeypatch):
        assert ordered(records) == expected


def test_resampled_records_are_the_old_ones_with_and_without_the_cache(root, monkeypatch):
    stems = ["b_seed_3", "a_seed_100", "a_seed_\u0663", "x_seed_1_seed_7"]
    pairs = [(os.path.join(root, "images", s + ".jpg"), os.path.join(root, "annotations", s + ".png")) for s in stems]
    write_manifest(os.path.join(root, "resampled_manifest.txt"), pairs, root)
    expected = [
        {"file_name": image, "sem_seg_file_name": mask, "reduce_zero_label": False,
         "real_stem": old_parse(s)[0], "seed": old_parse(s)[1]}  # fmt: skip
        for (image, mask), s in zip(pairs, stems)
    ]
    for records in three_ways(lambda: load_resampled(root), monkeypatch):
        assert ordered(records) == ordered(expected)


def test_sem_seg_records_are_the_old_ones_with_and_without_the_cache(root, monkeypatch):
    images, masks = os.path.join(root, "images"), os.path.join(root, "annotations")
    expected = ordered(old_sem_seg(images, masks))
    assert len(expected) == len(STEMS)
    for records in three_ways(lambda: load_sem_seg(images, masks), monkeypatch):
        assert ordered(records) == expected
    # The prepared-split loader: one record per mask, its image required.
    for records in three_ways(lambda: load_prepared_sem_seg(images, masks, "hint"), monkeypatch):
        assert ordered(records) == expected


def test_parse_synthetic_stem_is_the_old_regular_expression():
    rng = random.Random(0)
    pieces = ["a", "_", "1", "7", "\u0663", "\u00b2", "\n", "x", "_seed_", "_seed_", "s"]
    stems = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 6))) for _ in range(20000)]
    stems += ["_seed_1", "a_seed_", "a\n_seed_1", "a_seed_1\n", "a_seed_\u00b2", "a_seed_\u0663", "a_seed__seed_2"]
    assert sum(old_parse(s) is not None for s in stems) > 500  # the sample holds many names of pairs
    for stem in stems:
        assert parse_synthetic_stem(stem) == old_parse(stem), repr(stem)


def test_three_key_sorts_give_the_tuple_order():
    rng = random.Random(1)
    triples = [(rng.choice("abAB\u00e9"), rng.choice([0, 1, 2, 2**40, 2**40 + 1]), rng.choice(["s1", "s0", "t"]))
               for _ in range(5000)]  # fmt: skip
    assert _sorted_by_stem_and_seed(triples) == sorted(triples)
