"""The compact form of a synthetic split (SyntheticRecords) equals load_synthetic's list item by item, pickles as
handles through multiprocessing, is what the catalog's compact loaders return; ChainedRecords indexes as a list."""

import io
import os
import pickle
import shutil
from multiprocessing.reduction import ForkingPickler

import pytest

from freemask.data.catalog import DatasetCatalog, MetadataCatalog
from freemask.data.datasets import register_synthetic_splits
from freemask.data.datasets.synthetic import load_synthetic, load_synthetic_compact, parse_synthetic_stem
from freemask.data.datasets.toy import TOY_SYN_SPLITS
from freemask.data.loading.chained_records import ChainedRecords
from freemask.data.loading.synthetic_records import SyntheticRecords

# Names that stress the encoding and the parse: a seed past 2**31 and past 2**63, non-ASCII and non-UTF-8 (a lone
# surrogate, as os.listdir gives for undecodable bytes) stems, `_seed_` inside the real stem, seeds '01' and '1'
# (two files, one seed value), a Unicode decimal seed, a file that is no pair.
HAND_MADE = [
    "a_seed_4294967296",
    "a_seed_36893488147419103232",
    "рыба_été_seed_7",
    "画像\udcff_seed_3",
    "x_seed_1_seed_2",
    "x_seed_01",
    "x_seed_1",
    "y_seed_\u0663",
    "z_seed_",
]


def make_pairs(root, stems, masks_dirs=("annotations", "annotations_filtered")):
    """Empty files named as pairs: the loaders read names only."""
    for folder, ext in [("images", ".jpg")] + [(d, ".png") for d in masks_dirs]:
        os.makedirs(os.path.join(root, folder), exist_ok=True)
        for stem in stems:
            open(os.path.join(root, folder, stem + ext), "wb").close()


def assert_same_records(compact, records):
    """Same length, and item by item the same keys in the same order, equal values of the same types."""
    assert len(compact) == len(records)
    for i, expected in enumerate(records):
        got = compact[i]
        assert list(got.items()) == list(expected.items()), i
        assert [type(v) for v in got.values()] == [type(v) for v in expected.values()], i
    assert list(compact) == records


@pytest.mark.parametrize("masks_dir", ["annotations", "annotations_filtered"])
@pytest.mark.parametrize("reduce_zero_label", [False, True])
def test_hand_made_names_equal_the_list(tmp_path, masks_dir, reduce_zero_label):
    root = str(tmp_path / "syn")
    make_pairs(root, HAND_MADE)
    records = load_synthetic(root, masks_dir, reduce_zero_label)
    assert len(records) == len(HAND_MADE) - 1  # "z_seed_" is no pair
    assert {r["seed"] for r in records} >= {2**32, 2**65, 1, 3}
    # load_synthetic's own content, against the reference parse and the documented order (real stem, seed, stem).
    expected = sorted((*parse_synthetic_stem(stem), stem) for stem in HAND_MADE if parse_synthetic_stem(stem))
    image_root, mask_root = os.path.join(root, "images"), os.path.join(root, masks_dir)
    assert records == [
        {
            "file_name": os.path.join(image_root, stem + ".jpg"),
            "sem_seg_file_name": os.path.join(mask_root, stem + ".png"),
            "reduce_zero_label": reduce_zero_label,
            "real_stem": real_stem,
            "seed": seed,
        }
        for real_stem, seed, stem in expected
    ]
    assert_same_records(load_synthetic_compact(root, masks_dir, reduce_zero_label), records)


def test_other_extensions_and_a_plain_pickle_round_trip(tmp_path):
    root = str(tmp_path / "syn")
    for folder, ext in (("images", ".png"), ("annotations", ".tif")):
        os.makedirs(os.path.join(root, folder))
        for stem in HAND_MADE:
            open(os.path.join(root, folder, stem + ext), "wb").close()
    records = load_synthetic(root, image_ext=".png", mask_ext=".tif")
    compact = load_synthetic_compact(root, image_ext=".png", mask_ext=".tif")
    assert_same_records(compact, records)
    assert_same_records(pickle.loads(pickle.dumps(compact)), records)


def test_list_behaviour_indices_slices_errors(tmp_path):
    root = str(tmp_path / "syn")
    make_pairs(root, HAND_MADE)
    records = load_synthetic(root)
    compact = load_synthetic_compact(root)
    assert compact[-1] == records[-1] and compact[-len(records)] == records[0]
    assert compact[1:6:2] == records[1:6:2] and compact[::-1] == records[::-1]
    for index in (len(records), -len(records) - 1):
        with pytest.raises(IndexError):
            compact[index]
    with pytest.raises(TypeError):
        compact["0"]
    assert compact.nbytes > 0 and "SyntheticRecords(8 records" in repr(compact)
    empty = SyntheticRecords([], "_seed_", "i/", "m/", ".jpg", ".png", False)
    assert len(empty) == 0 and list(empty) == []
    with pytest.raises(ValueError, match="NUL"):
        SyntheticRecords(["a_seed_1", "b\0_seed_2"], "_seed_", "i/", "m/", ".jpg", ".png", False)


def test_errors_are_load_synthetic_s(tmp_path):
    root = str(tmp_path / "syn")
    make_pairs(root, ["a_seed_1", "a_seed_2"], masks_dirs=("annotations",))
    os.remove(os.path.join(root, "annotations", "a_seed_2.png"))
    for load in (load_synthetic, load_synthetic_compact):
        with pytest.raises(Exception) as error:
            load(root)
        assert "1 of 2 synthetic images" in str(error.value)
        with pytest.raises(Exception) as error:
            load(root, "annotations_filtered")
        assert "filter_syn.py" in str(error.value)


def forking_pickle_size(obj):
    buffer = io.BytesIO()
    ForkingPickler(buffer, pickle.HIGHEST_PROTOCOL).dump(obj)
    return len(buffer.getvalue())


def test_multiprocessing_pickles_handles_not_the_records(tmp_path):
    sizes = {}
    for count in (10, 5000):
        root = str(tmp_path / f"syn{count}")
        make_pairs(root, [f"COCO_train2017_{i:012d}_seed_{42 + i % 7}" for i in range(count)], ("annotations",))
        compact = load_synthetic_compact(root)
        assert compact.nbytes > 30 * count
        sizes[count] = forking_pickle_size(compact)
        # And through a chain, as the loader's workers receive it.
        sizes[-count] = forking_pickle_size(ChainedRecords([compact]))
    # Handles and sizes of the shared memory, the folder names: not the 200 kB of 5000 stems.
    assert max(sizes.values()) < 2000 and abs(sizes[5000] - sizes[10]) < 64 and abs(sizes[-5000] - sizes[-10]) < 64


def test_chain_indexes_as_the_concatenated_list():
    parts = [list(range(3)), ["a"], list(range(10, 15))]
    chain = ChainedRecords(parts)
    flat = [x for part in parts for x in part]
    assert len(chain) == len(flat) == 9
    assert [chain[i] for i in range(-len(flat), len(flat))] == flat + flat
    assert list(chain) == flat and chain[2:7] == flat[2:7] and chain[::-2] == flat[::-2]
    assert [chain[(i + k) % len(chain)] for i in (7, 8) for k in (1, 2)] == [flat[8], flat[0], flat[0], flat[1]]
    for index in (9, -10):
        with pytest.raises(IndexError):
            chain[index]
    empty = ChainedRecords([])
    assert len(empty) == 0 and list(empty) == []
    with pytest.raises(IndexError):
        empty[0]


def test_toy_splits_compact_loaders_equal_their_lists(toy_datasets, tmp_path, monkeypatch):
    """The catalog's "all" and "filtered" splits have a compact loader equal to get(); "resampled" has none."""
    datasets = tmp_path / "datasets"
    shutil.copytree(os.path.join(toy_datasets, "toy", "ADE20K_Synthetic"), datasets / "toy" / "ADE20K_Synthetic")
    filtered = datasets / "toy" / "ADE20K_Synthetic" / "annotations_filtered"
    filtered.mkdir()
    for name in os.listdir(filtered.parent / "annotations"):
        (filtered / name).write_bytes(b"")
    monkeypatch.setenv("DETECTRON2_DATASETS", str(datasets))
    for kind in ("all", "filtered"):
        name = TOY_SYN_SPLITS[kind]
        records = DatasetCatalog.get(name)
        assert len(records) >= 16
        compact = DatasetCatalog.get_compact(name)
        assert isinstance(compact, SyntheticRecords)
        assert_same_records(compact, records)
    assert DatasetCatalog.get_compact(TOY_SYN_SPLITS["resampled"]) is None
    assert DatasetCatalog.get_compact("toy_sem_seg_train") is None


def test_catalog_compact_registration(tmp_path):
    with pytest.raises(KeyError, match="not registered"):
        DatasetCatalog.register_compact("fm_compact_nowhere", list)
    with pytest.raises(KeyError, match="not registered"):
        DatasetCatalog.get_compact("fm_compact_nowhere")
    MetadataCatalog.get("fm_compact_real").set(stuff_classes=["a"], ignore_label=255)
    root = str(tmp_path / "syn")
    make_pairs(root, ["r_seed_1"])
    names = {"all": "fm_compact_all", "resampled": "fm_compact_resampled"}
    register_synthetic_splits(names, lambda: root, "fm_compact_real", False, "hint")
    try:
        assert list(DatasetCatalog.get_compact("fm_compact_all")) == DatasetCatalog.get("fm_compact_all")
        with pytest.raises(ValueError, match="already has a compact loader"):
            DatasetCatalog.register_compact("fm_compact_all", list)
        DatasetCatalog.remove("fm_compact_all")
        DatasetCatalog.register("fm_compact_all", list)
        assert DatasetCatalog.get_compact("fm_compact_all") is None  # removing a dataset removes its compact loader
    finally:
        for name in names.values():
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
        MetadataCatalog.remove("fm_compact_real")
