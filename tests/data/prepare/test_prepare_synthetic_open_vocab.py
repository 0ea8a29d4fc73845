"""The seen-class twins of synthetic masks (datasets/prepare_synthetic_open_vocab.py) on hand-made synthetic roots:
the values (seen classes re-indexed, unseen and unlabeled 255), resume, redoing a re-filtered mask, untouched inputs,
and the one-line errors."""

import hashlib
import importlib.util
import os

import cv2
import numpy as np
import pytest

from freemask.data.errors import DatasetError
from freemask.data.mappers.semantic import read_mask
from freemask.data.prepare.synthetic_open_vocab import prepare_synthetic_open_vocab

# The toy stores class k as k + 1 (0 = unlabeled): sky 1, grass 2, road 3 (unseen), building 4, car 5, person 6
# (unseen) -> seen sky 0, grass 1, building 2, car 3.
TOY_RAW = np.array([[0, 1, 2, 3], [4, 5, 6, 1]], np.uint8)
TOY_BASE = np.array([[255, 0, 1, 255], [2, 3, 255, 0]], np.uint8)
# COCO-Stuff 0..170: person 0, cow 19 (unseen), airplane 20 (-> 19, after one unseen), grass 112 (unseen), wood 170
# (the last of 156 seen -> 155), ignore 255.
COCO_RAW = np.array([[0, 19, 20], [112, 170, 255]], np.uint8)
COCO_BASE = np.array([[0, 255, 19], [255, 155, 255]], np.uint8)


def write_root(root, folder, masks, filtered=None):
    """``<root>/<folder>`` with images/ and annotations/ (and annotations_filtered/) of the ``masks`` (stem -> map)."""
    base = os.path.join(root, folder)
    for sub in ("images", "annotations") + (("annotations_filtered",) if filtered is not None else ()):
        os.makedirs(os.path.join(base, sub), exist_ok=True)
    for stem, mask in masks.items():
        cv2.imwrite(os.path.join(base, "images", f"{stem}.jpg"), np.zeros((*mask.shape, 3), np.uint8))
        cv2.imwrite(os.path.join(base, "annotations", f"{stem}.png"), mask)
        if filtered is not None:
            cv2.imwrite(os.path.join(base, "annotations_filtered", f"{stem}.png"), filtered[stem])
    return base


def hashes(folder):
    out = {}
    for sub, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(sub, name), "rb") as f:
                out[os.path.join(sub, name)] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest.fixture
def toy_root(tmp_path):
    filtered = np.where(TOY_RAW == 5, 0, TOY_RAW).astype(np.uint8)  # filter_syn.py ignores car (ADE: 0)
    masks = {"a_seed_0": TOY_RAW, "a_seed_1": TOY_RAW[::-1].copy()}
    write_root(tmp_path, "toy/ADE20K_Synthetic", masks, {"a_seed_0": filtered, "a_seed_1": filtered[::-1].copy()})
    return tmp_path


def test_toy_and_coco_twins_hold_the_seen_classes(toy_root):
    syn = os.path.join(toy_root, "toy", "ADE20K_Synthetic")
    coco = write_root(toy_root, "COCO_Synthetic", {"c_seed_3": COCO_RAW})
    inputs = {**hashes(os.path.join(syn, "annotations")), **hashes(os.path.join(syn, "annotations_filtered")),
              **hashes(os.path.join(coco, "annotations"))}  # fmt: skip
    result = prepare_synthetic_open_vocab(str(toy_root), progress=False)
    assert (result.converted, result.skipped, result.errors) == (5, 0, [])
    np.testing.assert_array_equal(read_mask(os.path.join(syn, "annotations_base", "a_seed_0.png")), TOY_BASE)
    np.testing.assert_array_equal(read_mask(os.path.join(syn, "annotations_base", "a_seed_1.png")), TOY_BASE[::-1])
    filtered_base = np.where(TOY_BASE == 3, 255, TOY_BASE)
    out = read_mask(os.path.join(syn, "annotations_filtered_base", "a_seed_0.png"))
    np.testing.assert_array_equal(out, filtered_base)
    np.testing.assert_array_equal(read_mask(os.path.join(coco, "annotations_base", "c_seed_3.png")), COCO_BASE)
    after = {**hashes(os.path.join(syn, "annotations")), **hashes(os.path.join(syn, "annotations_filtered")),
             **hashes(os.path.join(coco, "annotations"))}  # fmt: skip
    assert after == inputs, "the release folders are only read"
    assert not os.path.exists(os.path.join(coco, "annotations_filtered_base")), "no filtered masks, no twin"


def test_resume_skips_finished_masks_and_redoes_interrupted_or_refiltered_ones(toy_root):
    syn = os.path.join(toy_root, "toy", "ADE20K_Synthetic")
    prepare_synthetic_open_vocab(str(toy_root), progress=False)
    result = prepare_synthetic_open_vocab(str(toy_root), progress=False)
    assert (result.converted, result.skipped) == (0, 4)

    os.remove(os.path.join(syn, "annotations_base", "a_seed_1.png"))  # an interrupted run
    refiltered = os.path.join(syn, "annotations_filtered", "a_seed_0.png")
    cv2.imwrite(refiltered, np.zeros_like(TOY_RAW))  # filter_syn.py run again: everything ignored
    twin = os.path.join(syn, "annotations_filtered_base", "a_seed_0.png")
    stamp = os.stat(twin).st_mtime
    os.utime(refiltered, (stamp + 5, stamp + 5))
    result = prepare_synthetic_open_vocab(str(toy_root), progress=False)
    assert (result.converted, result.skipped) == (2, 2)
    assert (read_mask(twin) == 255).all()

    result = prepare_synthetic_open_vocab(str(toy_root), force=True, progress=False)
    assert (result.converted, result.skipped) == (4, 0)


def test_a_value_outside_the_vocabulary_is_a_line_naming_the_file(tmp_path):
    write_root(tmp_path, "toy/ADE20K_Synthetic", {"b_seed_0": np.array([[1, 7]], np.uint8)})
    result = prepare_synthetic_open_vocab(str(tmp_path), progress=False)
    assert len(result.errors) == 1 and "b_seed_0.png" in result.errors[0] and "[7]" in result.errors[0]


def test_no_synthetic_root_names_where_it_looked(tmp_path):
    with pytest.raises(DatasetError, match="no synthetic root found.*ADE20K_Synthetic.*COCO_Synthetic"):
        prepare_synthetic_open_vocab(str(tmp_path), progress=False)


def test_the_command_line(toy_root, tmp_path, capsys):
    script = os.path.join(os.path.dirname(__file__), "..", "..", "..", "datasets", "prepare_synthetic_open_vocab.py")
    spec = importlib.util.spec_from_file_location("prepare_synthetic_open_vocab_cli", script)
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    assert cli.main(["--root", str(toy_root), "--workers", "2"]) == 0
    assert "converted 4" in capsys.readouterr().out
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["--root", str(empty)]) == 1
    assert capsys.readouterr().err.startswith("error: no synthetic root found")
