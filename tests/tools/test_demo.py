"""tools/demo.py with a randomly initialised toy Semantic FPN (nothing is trained): overlays and labels, the legend,
resuming, bad input. One run is the user's command in a subprocess; the others call ``main`` in this process."""

import os

import cv2
import numpy as np
import pytest
from script_runner import run_script

from freemask.checkpoint import Checkpointer
from freemask.commands import demo as demo_command
from freemask.data.datasets.toy import TOY_CLASSES, TOY_COLORS
from freemask.engine.defaults import setup_cfg
from freemask.modeling import build_model
from freemask.utils import visualizer as V

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(REPO, "tools", "demo.py")
CONFIG = os.path.join(REPO, "configs", "toy", "semantic-segmentation", "semantic_fpn_R18_toy.yaml")
SMALL = ["MODEL.SEM_SEG_HEAD.CONVS_DIM", "32", "MODEL.SEM_SEG_HEAD.HEAD_DIM", "32", "MODEL.DEVICE", "cpu"]


@pytest.fixture(scope="module")
def tool():
    return demo_command


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A checkpoint of the toy model with random weights, saved as training saves it."""
    folder = str(tmp_path_factory.mktemp("demo_model"))
    Checkpointer(build_model(setup_cfg(CONFIG, SMALL)), folder).save("model_random")
    return os.path.join(folder, "model_random.pth")


@pytest.fixture(scope="module")
def val_images(toy_datasets):
    return os.path.join(toy_datasets, "toy", "ADEChallengeData2016", "images", "validation")


def demo_args(weights, *args):
    return ["--config-file", CONFIG, "--no-progress", *map(str, args), "MODEL.WEIGHTS", weights, *SMALL]


def read_rgb(path):
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def swatch_colors(legend, colors):
    """Indices of ``colors`` drawn as a whole swatch in ``legend`` (text anti-aliasing never fills a swatch)."""
    return [i for i, c in enumerate(colors) if np.all(legend == np.asarray(c, np.uint8), -1).sum() >= V.SWATCH**2]


def test_overlays_labels_and_legend_of_every_input(weights, val_images, tmp_path):
    out = tmp_path / "demo"
    args = demo_args(weights, "--input", val_images, "--output", out, "--opacity", 1.0, "--save-labels")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = run_script([TOOL, *args], cwd=REPO, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = sorted(os.listdir(val_images))
    assert sorted(os.listdir(out)) == sorted([n.replace(".jpg", ".png") for n in names] + ["labels"])
    assert f"wrote {len(names)} overlays" in proc.stdout
    for name in names:
        png = name.replace(".jpg", ".png")
        image = read_rgb(os.path.join(val_images, name))
        h, w = image.shape[:2]
        labels = cv2.imread(str(out / "labels" / png), cv2.IMREAD_UNCHANGED)
        assert labels.shape == (h, w) and labels.dtype == np.uint8 and labels.max() < len(TOY_CLASSES)
        figure = read_rgb(out / png)
        # image | prediction (issue 18.16), small images enlarged by an integer factor, then the legend
        shown = V.upscale_small(image)
        H, W = shown.shape[:2]
        assert H > h and figure.shape[0] == H and figure.shape[1] > 2 * W + 2 * V.PANEL_GAP
        np.testing.assert_array_equal(figure[:, :W], shown)
        # opacity 1: the overlay is the palette colour of each predicted label
        overlay = figure[:, W + V.PANEL_GAP : 2 * W + V.PANEL_GAP]
        np.testing.assert_array_equal(overlay, V.upscale_small(np.asarray(TOY_COLORS, np.uint8)[labels]))
        legend = figure[:, 2 * W + V.PANEL_GAP :]
        assert swatch_colors(legend, TOY_COLORS) == sorted(np.unique(labels).tolist())


def test_legend_lists_exactly_the_classes_of_a_label_map():
    colors = [[200, 30, 30], [30, 200, 30], [30, 30, 200], [200, 200, 30], [30, 200, 200], [200, 30, 200]]
    names = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]
    labels = np.full((40, 50), 255, np.uint8)
    labels[:10], labels[10:20, :5], labels[30:, 40:] = 4, 1, 5
    present = V.classes_present(labels, len(names))
    assert present == [1, 4, 5]
    legend = V.draw_legend([names[c] for c in present], [colors[c] for c in present], height=40)
    assert legend.shape[0] == 40
    assert swatch_colors(legend, colors) == [1, 4, 5]
    # more entries than one column holds: further columns, same height
    tall = V.draw_legend(names, colors, height=40)
    assert tall.shape[0] == 40 and tall.shape[1] > legend.shape[1]
    assert swatch_colors(tall, colors) == list(range(6))


def test_blend_and_colorize():
    image = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    labels = np.array([[0, 1, 255, 7, 1, 0, 0]] * 5)
    colored = V.colorize(labels, [[10, 20, 30], [40, 50, 60]])
    assert colored[0, 0].tolist() == [10, 20, 30] and colored[0, 1].tolist() == [40, 50, 60]
    assert colored[0, 2].tolist() == list(V.IGNORE_COLOR) and colored[0, 3].tolist() == list(V.IGNORE_COLOR)
    np.testing.assert_array_equal(V.blend(image, colored, 0.0), image)
    np.testing.assert_array_equal(V.blend(image, colored, 1.0), colored)
    half = V.blend(image, colored, 0.5).astype(int)
    assert np.abs(half - (image.astype(int) + colored) / 2).max() <= 1


def test_existing_outputs_are_skipped_unless_overwrite(tool, weights, val_images, tmp_path, capsys):
    out = tmp_path / "demo"
    image = os.path.join(val_images, min(os.listdir(val_images)))
    overlay = out / (os.path.basename(image)[:-4] + ".png")
    assert tool.run_demo(demo_args(weights, "--input", image, "--output", out)) == 0
    first = overlay.read_bytes()
    overlay.write_bytes(b"stale")
    assert tool.run_demo(demo_args(weights, "--input", image, "--output", out)) == 0
    assert overlay.read_bytes() == b"stale" and "skipped 1" in capsys.readouterr().out
    # asking for labels too: the image is not finished, so it is redone
    assert tool.run_demo(demo_args(weights, "--input", image, "--output", out, "--save-labels")) == 0
    assert overlay.read_bytes() == first and (out / "labels" / overlay.name).is_file()
    overlay.write_bytes(b"stale")
    assert tool.run_demo(demo_args(weights, "--input", image, "--output", out, "--save-labels", "--overwrite")) == 0
    assert overlay.read_bytes() == first
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]


@pytest.mark.parametrize(
    "make_input, expected",
    [
        (lambda d: str(d / "missing.jpg"), "no such file or pattern"),
        (lambda d: str(d / "nothing_here_*.jpg"), "no such file or pattern"),
        (lambda d: _write(d / "notes.txt", b"not an image"), "not a readable image"),
        (lambda d: _write(d / "broken.jpg", b"\xff\xd8\xff\xe0 truncated"), "not a readable image"),
    ],
)
def test_bad_input_is_one_error_line(tool, weights, tmp_path, capsys, make_input, expected):
    path = make_input(tmp_path)
    assert tool.run_demo(demo_args(weights, "--input", path, "--output", tmp_path / "demo")) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and expected in err and os.path.basename(path) in err, err
    assert not (tmp_path / "demo").exists() or not os.listdir(tmp_path / "demo")


def test_missing_weights_and_output_over_inputs(tool, val_images, tmp_path, capsys):
    args = ["--config-file", CONFIG, "--input", val_images, "--output", str(tmp_path / "demo"), *SMALL]
    assert tool.run_demo(args) == 1
    assert "no MODEL.WEIGHTS" in capsys.readouterr().err
    assert tool.run_demo(["--config-file", CONFIG, "--input", val_images, "--output", val_images, *SMALL]) == 1
    assert "never overwritten" in capsys.readouterr().err


def _write(path, data):
    path.write_bytes(data)
    return str(path)
