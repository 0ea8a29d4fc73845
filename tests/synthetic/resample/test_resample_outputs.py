"""Outputs of re-sampling: the chosen pairs, folders of copies or links, the manifest round trip and its place."""

import os

import cv2
import numpy as np
import pytest

from freemask.data.catalog import DatasetCatalog
from freemask.data.datasets.synthetic import read_manifest, write_manifest
from freemask.data.errors import DatasetError
from freemask.synthetic.resample.outputs import chosen_pairs, manifest_path, materialise
from freemask.synthetic.resample.plan import plan_resampling
from freemask.synthetic.sources import SourceSpec


def _plan(toy, seed=0):
    synthetic = SourceSpec("toy_syn_sem_seg_train").synthetic_pairs()
    hardness = {stem: float(i) for i, stem in enumerate(sorted(synthetic.pairs))}
    return plan_resampling(hardness, synthetic.seeds(), max_copies=2, seed=seed), synthetic


def test_manifest_round_trip_into_the_registered_resampled_split(toy):
    plan, synthetic = _plan(toy)
    pairs = chosen_pairs(plan, synthetic)
    assert len(pairs) == plan.total_pairs and plan.total_pairs < synthetic.num_pairs  # the easiest keep 1 of 2
    write_manifest(os.path.join(synthetic.root, "resampled_manifest.txt"), pairs, synthetic.root)
    records = DatasetCatalog.get("toy_syn_resampled_sem_seg_train")
    assert [(r["file_name"], r["sem_seg_file_name"]) for r in records] == pairs
    chosen = {(r["real_stem"], r["seed"]) for r in records}
    assert chosen == {(n, s) for n, seeds in zip(plan.names, plan.chosen) for s in seeds}
    assert all(r["reduce_zero_label"] for r in records)


@pytest.mark.parametrize("symlink", [False, True])
def test_materialise_builds_a_synthetic_root_and_resumes(toy, tmp_path, symlink):
    plan, synthetic = _plan(toy)
    pairs = chosen_pairs(plan, synthetic)
    target = tmp_path / "resampled"
    first = materialise(pairs, str(target), symlink=symlink, workers=2)
    assert (first.written, first.skipped, first.unlisted) == (2 * len(pairs), 0, 0)
    for (image, mask), (new_image, new_mask) in zip(pairs, first.pairs):
        assert os.path.dirname(new_image) == str(target / "images") and os.path.basename(new_image) == os.path.basename(
            image
        )
        assert os.path.islink(new_mask) == symlink
        np.testing.assert_array_equal(
            cv2.imread(new_mask, cv2.IMREAD_UNCHANGED), cv2.imread(mask, cv2.IMREAD_UNCHANGED)
        )
    write_manifest(str(target / "resampled_manifest.txt"), first.pairs, str(target))
    assert read_manifest(str(target / "resampled_manifest.txt"), str(target)) == first.pairs
    # an interrupted run: one file missing, a stray temporary file and a file of another selection
    os.unlink(first.pairs[0][0])
    (target / "images" / ".leftover.tmp").write_bytes(b"")
    (target / "images" / "old_seed_1.jpg").write_bytes(b"")
    again = materialise(pairs, str(target), symlink=symlink, workers=1)
    assert (again.written, again.skipped, again.unlisted) == (1, 2 * len(pairs) - 1, 1)
    assert not [n for n in os.listdir(target / "annotations") if n.startswith(".")]


@pytest.mark.parametrize("symlink", [False, True])
def test_materialise_never_keeps_or_overwrites_a_different_file(toy, tmp_path, symlink):
    plan, synthetic = _plan(toy)
    pairs = chosen_pairs(plan, synthetic)
    target = tmp_path / "resampled"
    (target / "annotations").mkdir(parents=True)
    clash = target / "annotations" / os.path.basename(pairs[0][1])
    clash.write_bytes(b"an older, different mask")
    with pytest.raises(DatasetError, match=rf"{clash.name} already exists but is not a"):
        materialise(pairs, str(target), symlink=symlink)
    assert clash.read_bytes() == b"an older, different mask"


def test_manifest_goes_where_the_resampled_split_reads_it_and_must_hold_the_files(toy, tmp_path):
    synthetic = SourceSpec("toy_syn_sem_seg_train").synthetic_pairs()
    assert manifest_path(None, None, synthetic) == os.path.join(synthetic.root, "resampled_manifest.txt")
    copies = str(tmp_path / "copies")
    assert manifest_path(None, copies, synthetic) == os.path.join(copies, "resampled_manifest.txt")
    inside = os.path.join(synthetic.root, "sub", "..", "m.txt")
    assert manifest_path(inside, None, synthetic) == inside
    with pytest.raises(DatasetError, match="does not contain .*put it in a folder that holds the files"):
        manifest_path(str(tmp_path / "elsewhere" / "m.txt"), None, synthetic)
    with pytest.raises(DatasetError, match="does not contain"):
        manifest_path(str(tmp_path / "elsewhere" / "m.txt"), copies, synthetic)  # the copies are not below it
