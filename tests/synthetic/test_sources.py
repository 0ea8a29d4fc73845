"""The tools' inputs (freemask.synthetic.sources): a registered dataset or folders, listed as pairs, real masks or
synthetic pairs by seed."""

import argparse

import pytest

from freemask.data.errors import DatasetError
from freemask.synthetic.sources import SourceSpec, folder_description


def _touch(folder, *names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"x")


def test_synthetic_from_folders_groups_seeds_by_real_stem(tmp_path):
    _touch(tmp_path / "img", "a_seed_42.jpg", "a_seed_45.jpg", "b_c_seed_3.jpg", "notes.txt", "preview.jpg")
    _touch(tmp_path / "ann", "a_seed_42.png", "a_seed_45.png", "b_c_seed_3.png", "extra_seed_1.png")
    pairs = SourceSpec(image_dir=str(tmp_path / "img"), mask_dir=str(tmp_path / "ann")).synthetic_pairs()
    assert pairs.seeds() == {"a": [42, 45], "b_c": [3]}
    assert pairs.num_pairs == 3 and pairs.root == str(tmp_path)
    assert pairs.pairs["a"][45] == (str(tmp_path / "img" / "a_seed_45.jpg"), str(tmp_path / "ann" / "a_seed_45.png"))
    assert pairs.without(["a"]).seeds() == {"b_c": [3]}


def test_synthetic_image_without_mask_is_an_error(tmp_path):
    _touch(tmp_path / "img", "a_seed_42.jpg", "a_seed_43.jpg")
    _touch(tmp_path / "ann", "a_seed_42.png")
    with pytest.raises(DatasetError, match=r"1 synthetic images .*\(a_seed_43\.jpg\).*filter_syn"):
        SourceSpec(image_dir=str(tmp_path / "img"), mask_dir=str(tmp_path / "ann")).synthetic_pairs()


def test_empty_or_missing_folders_are_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"no '\*\.png' masks in .*empty"):
        SourceSpec(mask_dir=str(tmp_path / "empty")).real_masks()
    with pytest.raises(DatasetError, match="real mask folder not found"):
        SourceSpec(mask_dir=str(tmp_path / "absent")).real_masks()
    with pytest.raises(DatasetError, match=r"no synthetic images named '<real_stem>_seed_<int>\.jpg'"):
        SourceSpec(image_dir=str(tmp_path / "empty"), mask_dir=str(tmp_path / "empty")).synthetic_pairs()
    with pytest.raises(DatasetError, match="synthetic image folder not found"):
        SourceSpec(image_dir=str(tmp_path / "absent"), mask_dir=str(tmp_path / "empty")).synthetic_pairs()


def test_real_and_synthetic_from_registered_toy(toy):
    real = SourceSpec("toy_sem_seg_train").real_masks()
    assert real.reduce_zero_label and real.ignore_label == 255 and real.num_classes == 6
    assert sorted(real.paths) == [f"toy_train_{i:05d}" for i in range(8)]
    synthetic = SourceSpec("toy_syn_sem_seg_train").synthetic_pairs()
    assert synthetic.root == str(toy / "ADE20K_Synthetic")
    assert synthetic.seeds() == {stem: [42, 43] for stem in real.paths}


def test_pairs_from_the_registered_toy_equal_those_from_its_folders(toy):
    registered = SourceSpec("toy_sem_seg_train").pairs()
    real = toy / "ADEChallengeData2016"
    folders = SourceSpec(None, str(real / "images" / "training"), str(real / "annotations" / "training"), True)
    listed = folders.pairs()
    assert listed.records == registered.records and len(listed.records) == 8
    assert registered.class_names[0] == "sky" and listed.class_names is None
    assert (registered.description, listed.description) == ("toy_sem_seg_train", folders.description)
    assert folders.description == folder_description(folders.image_dir, folders.mask_dir)


def test_from_args_reads_one_side_of_the_command_line():
    args = argparse.Namespace(
        syn_dataset=None, syn_img_path="S/images", syn_mask_path="S/masks", real_dataset="real_train",
        reduce_zero_label=True, image_ext=".png", mask_ext=".tif",
    )  # fmt: skip
    syn = SourceSpec.from_args(args, "syn", ignore_label=7)
    assert syn == SourceSpec(None, "S/images", "S/masks", True, 7, ".png", ".tif")
    assert SourceSpec.from_args(args, "real").description == "real_train"
    assert SourceSpec.from_args(argparse.Namespace(**{**vars(args), "real_dataset": None}), "real").description is None
