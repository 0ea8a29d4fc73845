"""tools/visualize_filtered.py on a copy of the toy synthetic set with hand-planted filtered pixels: panel pixels,
layout, ordering by filtered fraction, folder inputs and bad input. The tool's ``main`` runs in this process."""

import importlib.util
import os
import shutil

import cv2
import numpy as np
import pytest

from freemask.data.datasets.toy import TOY_COLORS
from freemask.utils import visualizer as V

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(REPO, "tools", "visualize_filtered.py")
WHITE = np.array(V.FILTERED_COLOR, dtype=np.uint8)
BLACK = np.array(V.IGNORE_COLOR, dtype=np.uint8)


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("visualize_filtered_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def syn_root(toy_datasets, tmp_path, monkeypatch):
    """A private copy of the toy synthetic root with an unlabeled block in every raw mask (0, kept by the filter) and
    ``annotations_filtered`` where a random rectangle of labelled pixels is set to 0 (the raw-mask "filtered" value).

    Returns (root, {mask file name: planted filtered map, bool (H, W)})."""
    datasets = tmp_path / "datasets"
    root = datasets / "toy" / "ADE20K_Synthetic"
    shutil.copytree(os.path.join(toy_datasets, "toy", "ADE20K_Synthetic"), root, ignore=shutil.ignore_patterns("def*"))
    os.makedirs(root / "annotations_filtered")
    rng = np.random.default_rng(0)
    planted = {}
    for name in sorted(os.listdir(root / "annotations")):
        raw = cv2.imread(str(root / "annotations" / name), cv2.IMREAD_UNCHANGED)
        raw[:6, :6] = 0
        cv2.imwrite(str(root / "annotations" / name), raw)
        h, w = raw.shape
        y, x = rng.integers(0, h // 2), rng.integers(0, w // 2)
        box = np.zeros_like(raw, dtype=bool)
        box[y : y + rng.integers(4, h // 2), x : x + rng.integers(4, w // 2)] = True
        removed = box & (raw != 0)
        filtered = raw.copy()
        filtered[removed] = 0
        cv2.imwrite(str(root / "annotations_filtered" / name), filtered)
        planted[name] = removed
    monkeypatch.setenv("DETECTRON2_DATASETS", str(datasets))
    return root, planted


def run(tool, *args):
    return tool.main([str(a) for a in args])


def read_rgb(path):
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def panels(figure, shape):
    """The three panels of a figure of an image of ``shape`` (H, W) as stored, enlarged as the tool enlarges it."""
    width = V.upscale_small(np.zeros(shape, np.uint8)).shape[1]
    step = width + V.PANEL_GAP
    return [figure[:, i * step : i * step + width] for i in range(3)]


def swatch_colors(legend, colors):
    """Indices of ``colors`` drawn as a whole swatch in ``legend`` (text anti-aliasing never fills a swatch)."""
    return [i for i, c in enumerate(colors) if np.all(legend == np.asarray(c, np.uint8), -1).sum() >= V.SWATCH**2]


def is_color(image, color):
    return np.all(image == np.asarray(color, dtype=np.uint8), axis=-1)


def test_panels_show_image_mask_and_filtered_pixels_in_white(tool, syn_root, tmp_path):
    root, planted = syn_root
    out = tmp_path / "vis"
    assert run(tool, "--syn-dataset", "toy_syn_sem_seg_train", "--output", out, "--no-title") == 0
    assert sorted(os.listdir(out)) == sorted(planted)
    for name, removed in planted.items():
        raw = cv2.imread(str(root / "annotations" / name), cv2.IMREAD_UNCHANGED)
        image = read_rgb(root / "images" / name.replace(".png", ".jpg"))
        expected = np.zeros((*raw.shape, 3), dtype=np.uint8)  # unlabeled (raw 0) is black
        for c, color in enumerate(TOY_COLORS):
            expected[raw == c + 1] = color
        # small images are enlarged by an integer factor (issue 18.16): 64x64 toy pairs are shown at 256x256
        factor = V.MIN_PANEL_SIDE // min(raw.shape)
        assert factor > 1
        image, expected, removed = (V.upscale_small(a) for a in (image, expected, removed))
        h, w = removed.shape
        assert (h, w) == (factor * raw.shape[0], factor * raw.shape[1])
        figure = read_rgb(out / name)
        assert figure.shape[0] == h and figure.shape[1] > 3 * w + 3 * V.PANEL_GAP
        gaps = [figure[:, w + i * (w + V.PANEL_GAP) : (i + 1) * (w + V.PANEL_GAP)] for i in range(3)]
        assert all(is_color(g, V.BACKGROUND).all() for g in gaps)
        shown_image, mask, third = panels(figure, raw.shape)
        np.testing.assert_array_equal(shown_image, image)
        np.testing.assert_array_equal(mask, expected)
        np.testing.assert_array_equal(is_color(third, WHITE), removed)
        assert not is_color(mask, WHITE).any()
        np.testing.assert_array_equal(third[~removed], expected[~removed])
        assert is_color(third[: 6 * factor, : 6 * factor], BLACK).all()  # originally unlabeled: black, not filtered
        legend = figure[:, 3 * (w + V.PANEL_GAP) :]  # the classes of the mask, in the dataset's colours
        assert swatch_colors(legend, TOY_COLORS) == sorted(int(v) - 1 for v in np.unique(raw) if v)


def test_title_strip_is_added_above_the_same_panels(tool, syn_root, tmp_path):
    name = min(syn_root[1])
    stem = name[:-4]
    for flags, out in (([], tmp_path / "titled"), (["--no-title"], tmp_path / "plain")):
        assert run(tool, "--syn-dataset", "toy_syn_sem_seg_train", "--names", stem, "--output", out, *flags) == 0
    titled, plain = read_rgb(tmp_path / "titled" / name), read_rgb(tmp_path / "plain" / name)
    assert titled.shape[1] == plain.shape[1] and titled.shape[0] > plain.shape[0]
    np.testing.assert_array_equal(titled[-plain.shape[0] :], plain)
    assert not is_color(titled[: -plain.shape[0]], WHITE).any()


def _fraction(root, name, removed):
    raw = cv2.imread(str(root / "annotations" / name), cv2.IMREAD_UNCHANGED)
    return removed.sum() / (raw != 0).sum()


@pytest.mark.parametrize("flag", ["--most-filtered", "--least-filtered"])
def test_sorting_by_filtered_fraction_with_limit(tool, syn_root, tmp_path, capsys, flag):
    root, planted = syn_root
    fractions = {name: _fraction(root, name, removed) for name, removed in planted.items()}
    ranked = sorted(fractions, key=fractions.get, reverse=flag == "--most-filtered")
    out = tmp_path / "vis"
    assert run(tool, "--syn-dataset", "toy_syn_sem_seg_train", "--output", out, flag, "--limit", 3) == 0
    files = sorted(os.listdir(out))
    assert files == [f"{i + 1}_{name}" for i, name in enumerate(ranked[:3])]
    printed = [line.split() for line in capsys.readouterr().out.splitlines() if line.strip().endswith(".png")]
    assert [float(p.rstrip("%")) for p, _ in printed] == pytest.approx([100 * fractions[n] for n in ranked[:3]], 0.01)


def test_filtered_split_name_and_folders_of_prepared_masks(tool, syn_root, tmp_path):
    """The filtered split finds its originals; folder inputs with prepared masks (255 = ignore) and --names."""
    root, planted = syn_root
    out = tmp_path / "from_filtered_split"
    assert run(tool, "--syn-dataset", "toy_syn_filtered_sem_seg_train", "--output", out, "--no-title") == 0
    name = sorted(planted)[1]
    shape = planted[name].shape
    shown = panels(read_rgb(out / name), shape)[2]
    np.testing.assert_array_equal(is_color(shown, WHITE), V.upscale_small(planted[name]))

    prepared, prepared_filtered = tmp_path / "masks", tmp_path / "masks_filtered"
    for src, dst in ((root / "annotations", prepared), (root / "annotations_filtered", prepared_filtered)):
        dst.mkdir()
        for n in os.listdir(src):
            raw = cv2.imread(str(src / n), cv2.IMREAD_UNCHANGED)
            cv2.imwrite(str(dst / n), np.where(raw == 0, 255, raw - 1).astype(np.uint8))
    chosen = sorted(planted)[2:4]
    out = tmp_path / "from_folders"
    args = ["--syn-img-path", root / "images", "--syn-mask-path", prepared, "--filtered-mask-path", prepared_filtered]
    names = ",".join(n[:-4] for n in chosen)
    assert run(tool, *args, "--palette", "toy_sem_seg_train", "--names", names, "--output", out, "--no-title") == 0
    assert sorted(os.listdir(out)) == chosen
    for n in chosen:
        shown = panels(read_rgb(out / n), shape)[2]
        np.testing.assert_array_equal(is_color(shown, WHITE), V.upscale_small(planted[n]))


def _drop_one_filtered(root):
    os.remove(min((root / "annotations_filtered").iterdir()))
    return "have no filtered version"


def _shrink_one_filtered(root):
    path = min((root / "annotations_filtered").iterdir())
    cv2.imwrite(str(path), np.ones((8, 8), np.uint8))
    return "filtered mask is 8x8"


@pytest.mark.parametrize(
    "spoil, extra, expected",
    [
        (_drop_one_filtered, [], None),
        (_shrink_one_filtered, [], None),
        (None, ["--filtered-mask-path", "{root}/nowhere"], "have no filtered version"),
        (None, ["--names", "not_an_image_seed_1"], "--names: 1 not found"),
        (None, ["--output", "{root}/annotations"], "is an input folder"),
    ],
)
def test_bad_input_is_one_error_line(tool, syn_root, tmp_path, capsys, spoil, extra, expected):
    root = syn_root[0]
    expected = spoil(root) if spoil else expected
    before = {p.name: p.read_bytes() for p in (root / "annotations").iterdir()}
    extra = [a.format(root=root) for a in extra]
    args = ["--syn-dataset", "toy_syn_sem_seg_train", "--output", tmp_path / "vis", *extra]
    assert run(tool, *args) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and expected in err, err
    assert {p.name: p.read_bytes() for p in (root / "annotations").iterdir()} == before


def test_missing_folder_is_one_error_line(tool, tmp_path, capsys):
    args = ["--syn-img-path", tmp_path / "no_images", "--syn-mask-path", tmp_path, "--filtered-mask-path", tmp_path]
    assert run(tool, *args, "--output", tmp_path / "vis") == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "no_images" in err and "\n" not in err, err
