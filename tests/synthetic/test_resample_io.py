"""Inputs and outputs of re-sampling: folder/dataset discovery, folders of copies, manifest round trip."""

import os
import shutil

import cv2
import numpy as np
import pytest

from freemask.data.catalog import DatasetCatalog
from freemask.data.datasets.synthetic import read_manifest, write_manifest
from freemask.data.errors import DatasetError
from freemask.synthetic.resample_inputs import (
    real_masks_from_dataset,
    real_masks_from_folder,
    synthetic_from_dataset,
    synthetic_from_folders,
)
from freemask.synthetic.resample_outputs import chosen_pairs, materialise
from freemask.synthetic.resampling import plan_resampling


@pytest.fixture
def toy(toy_datasets, tmp_path, monkeypatch):
    """A private copy of the session toy dataset (manifests are written into it), as $DETECTRON2_DATASETS."""
    root = tmp_path / "datasets"
    shutil.copytree(toy_datasets, root)
    monkeypatch.setenv("DETECTRON2_DATASETS", str(root))
    return root / "toy"


def _touch(folder, *names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"x")


def test_synthetic_from_folders_groups_seeds_by_real_stem(tmp_path):
    _touch(tmp_path / "img", "a_seed_42.jpg", "a_seed_45.jpg", "b_c_seed_3.jpg", "notes.txt", "preview.jpg")
    _touch(tmp_path / "ann", "a_seed_42.png", "a_seed_45.png", "b_c_seed_3.png", "extra_seed_1.png")
    pairs = synthetic_from_folders(str(tmp_path / "img"), str(tmp_path / "ann"))
    assert pairs.seeds() == {"a": [42, 45], "b_c": [3]}
    assert pairs.num_pairs == 3 and pairs.root == str(tmp_path)
    assert pairs.pairs["a"][45] == (str(tmp_path / "img" / "a_seed_45.jpg"), str(tmp_path / "ann" / "a_seed_45.png"))
    assert pairs.without(["a"]).seeds() == {"b_c": [3]}


def test_synthetic_image_without_mask_is_an_error(tmp_path):
    _touch(tmp_path / "img", "a_seed_42.jpg", "a_seed_43.jpg")
    _touch(tmp_path / "ann", "a_seed_42.png")
    with pytest.raises(DatasetError, match=r"1 synthetic images .*\(a_seed_43\.jpg\).*filter_syn"):
        synthetic_from_folders(str(tmp_path / "img"), str(tmp_path / "ann"))


def test_empty_or_missing_folders_are_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"no '\*\.png' masks in .*empty"):
        real_masks_from_folder(str(tmp_path / "empty"))
    with pytest.raises(DatasetError, match="real mask folder not found"):
        real_masks_from_folder(str(tmp_path / "absent"))
    with pytest.raises(DatasetError, match=r"no synthetic images named '<real_stem>_seed_<int>\.jpg'"):
        synthetic_from_folders(str(tmp_path / "empty"), str(tmp_path / "empty"))
    with pytest.raises(DatasetError, match="synthetic image folder not found"):
        synthetic_from_folders(str(tmp_path / "absent"), str(tmp_path / "empty"))


def test_real_and_synthetic_from_registered_toy(toy):
    real = real_masks_from_dataset("toy_sem_seg_train")
    assert real.reduce_zero_label and real.ignore_label == 255 and real.num_classes == 6
    assert sorted(real.paths) == [f"toy_train_{i:05d}" for i in range(8)]
    synthetic = synthetic_from_dataset("toy_syn_sem_seg_train")
    assert synthetic.root == str(toy / "ADE20K_Synthetic")
    assert synthetic.seeds() == {stem: [42, 43] for stem in real.paths}


def _plan(toy, seed=0):
    synthetic = synthetic_from_dataset("toy_syn_sem_seg_train")
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
