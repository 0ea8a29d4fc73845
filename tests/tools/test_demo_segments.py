"""tools/demo.py on the toy panoptic and instance Mask2Former configs (random weights), and the open-vocabulary path
with a stand-in model: which task is drawn, colours and outlines where the predicted segments are, the legends,
and the one-line refusals. Every run calls ``main`` in this process (CPU, 64 px images)."""

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from freemask.checkpoint import Checkpointer, load_trained_model
from freemask.commands import demo as demo_command
from freemask.data.datasets.sem_seg import default_palette
from freemask.data.datasets.toy import TOY_CLASSES, TOY_COLORS
from freemask.data.mappers.semantic import SemSegDatasetMapper, read_image
from freemask.engine import demo
from freemask.engine.defaults import setup_cfg
from freemask.modeling import META_ARCH_REGISTRY, build_model
from freemask.modeling.postprocess import UniversalPostprocess
from freemask.utils import segment_overlays as S
from freemask.utils import visualizer as V

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(REPO, "tools", "demo.py")
PANOPTIC = os.path.join(REPO, "configs", "toy", "panoptic-segmentation", "mask2former_R18_toy_panoptic.yaml")
INSTANCE = os.path.join(REPO, "configs", "toy", "instance-segmentation", "mask2former_R18_toy_instance.yaml")
# Random queries are rarely confident: with the toy thresholds at 0 every query that does not predict no-object counts.
LOOSE = [
    "MODEL.DEVICE", "cpu", "MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD", "0.0",
    "MODEL.MASK_FORMER.TEST.OVERLAP_THRESHOLD", "0.0", "TEST.DETECTIONS_PER_IMAGE", "4",
]  # fmt: skip
WHITE = S.OUTLINE_COLOR
STAND_IN = "VocabularyStandIn"  # the class below, registered by its name


@pytest.fixture(scope="module")
def tool():
    return demo_command


def _random_checkpoint(config, folder):
    """The toy Mask2Former with random weights, its class and mask heads sharpened (x 30, no-object made unlikely)
    so that random queries claim regions of several classes instead of leaving the image void."""
    torch.manual_seed(0)
    model = build_model(setup_cfg(config, LOOSE))
    with torch.no_grad():
        head = model.transformer_decoder
        head.class_embed.weight.mul_(30)
        head.class_embed.bias[-1] = -20
        head.mask_embed.layers[-1].weight.mul_(30)
    Checkpointer(model, str(folder)).save("model_random")
    return os.path.join(str(folder), "model_random.pth")


@pytest.fixture(scope="module")
def panoptic_weights(tmp_path_factory):
    return _random_checkpoint(PANOPTIC, tmp_path_factory.mktemp("demo_panoptic"))


@pytest.fixture(scope="module")
def instance_weights(tmp_path_factory):
    return _random_checkpoint(INSTANCE, tmp_path_factory.mktemp("demo_instance"))


@pytest.fixture(scope="module")
def val_images(toy_datasets):
    return os.path.join(toy_datasets, "toy", "ADEChallengeData2016", "images", "validation")


@pytest.fixture
def toy_env(toy_datasets, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", toy_datasets)


def read_rgb(path):
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def is_color(image, color):
    return np.all(image == np.asarray(color, np.uint8), axis=-1)


def run_demo(tool, config, weights, *args):
    argv = ["--config-file", config, "--no-progress", *map(str, args), "MODEL.WEIGHTS", weights, *LOOSE]
    return tool.run_demo(argv)


def predictions(tool, config, weights, image_path):
    """The outputs the demo draws, computed here from the same checkpoint and input."""
    cfg = setup_cfg(config, ["MODEL.WEIGHTS", weights, *LOOSE])
    classes = demo.demo_classes(cfg, None)
    model = load_trained_model(cfg, "test")
    image = read_image(image_path)
    inputs = tool.model_input(image, SemSegDatasetMapper.from_config(cfg, is_train=False))
    return image, demo.predict(model, inputs, demo.demo_postprocess(cfg, classes), classes.vocabulary)


def panels(figure, image):
    """(shown image, overlay, legend) of a one-task figure."""
    shown = V.upscale_small(image)
    width = shown.shape[1]
    return shown, figure[:, width + V.PANEL_GAP : 2 * width + V.PANEL_GAP], figure[:, 2 * (width + V.PANEL_GAP) :]


def test_panoptic_config_draws_segments_by_default(tool, panoptic_weights, val_images, toy_env, tmp_path, capsys):
    out = tmp_path / "demo"
    names = sorted(os.listdir(val_images))
    before = {n: (Path(val_images) / n).read_bytes() for n in names}
    assert run_demo(tool, PANOPTIC, panoptic_weights, "--input", val_images, "--output", out, "--opacity", 1.0) == 0
    assert {n: (Path(val_images) / n).read_bytes() for n in names} == before  # inputs untouched
    assert "(panoptic)" in capsys.readouterr().out  # the most specific of the three tasks on
    assert sorted(os.listdir(out)) == sorted(n.replace(".jpg", ".png") for n in names)
    drawn = 0
    for name in names:
        image, outputs = predictions(tool, PANOPTIC, panoptic_weights, os.path.join(val_images, name))
        seg, info = outputs["panoptic_seg"]
        seg = V.upscale_small(seg.numpy())
        figure = read_rgb(out / name.replace(".jpg", ".png"))
        shown, overlay, legend = panels(figure, image)
        assert figure.shape[0] == shown.shape[0] == 256
        np.testing.assert_array_equal(figure[:, : shown.shape[1]], shown)
        # void shows the image itself, but where a name box reaches over it (light grey, dark text)
        changed = overlay[(seg == 0) & (overlay != shown).any(-1)].astype(int)
        assert (changed.max(-1) == changed.min(-1)).all()
        edge = S.edges(seg)
        assert not is_color(overlay, WHITE)[(seg != 0) & ~edge].any()  # white only on outlines
        if edge.any():
            assert is_color(overlay, WHITE)[edge].mean() > 0.7  # (name boxes may cover some)
        for segment in info:
            inside = (seg == segment["id"]) & ~edge
            if inside.sum() > 4000:  # a name box covers under 30% of it
                assert is_color(overlay, TOY_COLORS[segment["category_id"]])[inside].mean() > 0.6
                drawn += 1
        present = sorted({s["category_id"] for s in info})
        expected = V.draw_legend([TOY_CLASSES[c] for c in present], [TOY_COLORS[c] for c in present], 256)
        np.testing.assert_array_equal(legend[:, : expected.shape[1]], expected)
    assert drawn >= 2, "the sharpened random model should predict a few large segments"


def test_a_panoptic_figure_with_no_segment_says_which_threshold_to_lower(
    tool, panoptic_weights, val_images, toy_env, tmp_path, caplog
):
    """Issue 24: a model whose queries all miss the thresholds gave bare images without a word; now the log and the
    figure (in the legend's place) name the keys to lower, and nothing is drawn over the image."""
    out = tmp_path / "demo"
    path = os.path.join(val_images, min(os.listdir(val_images)))
    strict = ["MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD", "1.0", "MODEL.MASK_FORMER.TEST.OVERLAP_THRESHOLD", "0.8"]
    argv = ["--config-file", PANOPTIC, "--no-progress", "--input", path, "--output", str(out), "--task", "panoptic"]
    assert tool.run_demo([*argv, "MODEL.WEIGHTS", panoptic_weights, *LOOSE, *strict]) == 0
    message = (
        "no panoptic segment passed MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD 1 / OVERLAP_THRESHOLD 0.8 (or every "
        "query predicted no-object): nothing drawn; lower them"
    )
    assert f"demo: {os.path.basename(path)}: {message}" in caplog.text
    image = read_image(path)
    shown, overlay, note = panels(read_rgb(out / (os.path.basename(path)[:-4] + ".png")), image)
    np.testing.assert_array_equal(overlay, shown)
    lines = (
        "nothing drawn: no segment passed",
        "the thresholds; lower",
        "MODEL.MASK_FORMER.TEST.",
        "OBJECT_MASK_THRESHOLD (now 1)",
        "or OVERLAP_THRESHOLD (now 0.8)",
    )
    np.testing.assert_array_equal(note, V.note_panel(lines, 256))
    # with both thresholds at 0 there is nothing to lower: the note says every query predicted no-object
    _, lines = demo.empty_panoptic_note(UniversalPostprocess(thing_ids=(0,)))
    assert lines == ("nothing drawn: every query", "predicted no-object", "(thresholds already 0)")


def test_task_all_stacks_one_titled_row_per_task(tool, panoptic_weights, val_images, toy_env, tmp_path, capsys):
    image = os.path.join(val_images, min(os.listdir(val_images)))
    rows = {}
    for task in ("semantic", "panoptic", "instance", "all"):
        out = tmp_path / task
        assert run_demo(tool, PANOPTIC, panoptic_weights, "--input", image, "--output", out, "--task", task,
                        "--score-threshold", 0.0, "--save-labels") == 0  # fmt: skip
        drawn = "semantic, panoptic, instance" if task == "all" else task
        assert f"({drawn})" in capsys.readouterr().out
        rows[task] = read_rgb(out / (os.path.basename(image)[:-4] + ".png"))
        assert (out / "labels" / (os.path.basename(image)[:-4] + ".png")).is_file()
    title = V.title_strip(["semantic"], 10).shape[0]
    figure = rows["all"]
    assert figure.shape[0] == 3 * (title + 256)
    for i, task in enumerate(("semantic", "panoptic", "instance")):
        top = i * (title + 256) + title
        row = rows[task]
        np.testing.assert_array_equal(figure[top : top + 256, : row.shape[1]], row)
    assert not np.array_equal(rows["semantic"], rows["panoptic"])


def test_instance_config_outlines_each_instance(tool, instance_weights, val_images, toy_env, tmp_path, capsys, caplog):
    out = tmp_path / "demo"
    path = os.path.join(val_images, min(os.listdir(val_images)))
    args = ["--input", path, "--output", out, "--opacity", 1.0, "--score-threshold", 0.0]
    assert run_demo(tool, INSTANCE, instance_weights, *args) == 0
    assert "(instance)" in capsys.readouterr().out
    image, outputs = predictions(tool, INSTANCE, instance_weights, path)
    instances = outputs["instances"]
    masks = np.repeat(np.repeat(instances["pred_masks"].numpy(), 4, axis=1), 4, axis=2)
    classes = instances["pred_classes"].tolist()
    assert len(classes) == 4 and masks.any()
    figure = read_rgb(out / (os.path.basename(path)[:-4] + ".png"))
    shown, overlay, legend = panels(figure, image)
    things = ["car", "person"]
    thing_colors = [TOY_COLORS[TOY_CLASSES.index(n)] for n in things]
    covered = masks.any(0)
    np.testing.assert_array_equal(overlay[~covered], shown[~covered])
    for c, color in enumerate(thing_colors):
        of_class = np.zeros_like(covered)
        for k in np.flatnonzero(np.asarray(classes) == c):
            of_class |= masks[k]
        assert not is_color(overlay, color)[covered & ~of_class].any()  # a class colour only in its own masks
    for k in range(len(classes)):
        assert is_color(overlay, WHITE)[S.edges(masks[k])].mean() > 0.5
    present = sorted(set(classes))
    expected = V.draw_legend([things[c] for c in present], [thing_colors[c] for c in present], 256)
    np.testing.assert_array_equal(legend[:, : expected.shape[1]], expected)
    # the score threshold: none of the random instances reaches 0.99, so nothing is drawn over the image, and the
    # figure and the log say so, with the best score and the flag to lower
    caplog.clear()
    assert run_demo(tool, INSTANCE, instance_weights, *args[:4], "--score-threshold", 0.99, "--overwrite") == 0
    figure = read_rgb(out / (os.path.basename(path)[:-4] + ".png"))
    shown, overlay, note = panels(figure, image)
    np.testing.assert_array_equal(overlay, shown)
    best = max(instances["scores"].tolist())
    message, lines = demo.empty_instance_note(instances["scores"].tolist(), 0.99)
    assert f"no instance scored at least --score-threshold 0.99 (best {best:.2f})" in message
    assert lines[-1] == "lower --score-threshold"
    assert f"demo: {os.path.basename(path)}: {message}" in caplog.text
    expected = V.note_panel(lines, 256)
    np.testing.assert_array_equal(note, expected)
    assert (expected != V.BACKGROUND).any()


@pytest.mark.parametrize(
    "config, flags, opts, expected",
    [
        (INSTANCE, ["--task", "semantic"], [], "--task semantic: the config has MODEL.MASK_FORMER.TEST.SEMANTIC_ON"),
        (INSTANCE, ["--save-labels"], [], "--save-labels writes semantic class ids"),
        (PANOPTIC, ["--vocabulary", "cat,dog"], [], "--vocabulary: MODEL.META_ARCHITECTURE 'MaskFormer' has the fixed"),
        (PANOPTIC, [], ["DATASETS.TEST", "()"], "the config names no test set"),
    ],
)
def test_refusals_are_one_line(tool, val_images, toy_env, tmp_path, capsys, config, flags, opts, expected):
    argv = ["--config-file", config, "--input", val_images, "--output", str(tmp_path / "o"), *flags, *LOOSE, *opts]
    assert tool.run_demo(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and expected in err, err
    assert not (tmp_path / "o").exists() or not os.listdir(tmp_path / "o")


class VocabularyStandIn(nn.Module):
    """An open-vocabulary model in miniature: for the ``K`` classes it is given, query ``k`` claims the k-th vertical
    stripe of the image with class ``k``, through the real post-processing. Records the vocabularies it is given."""

    received: list = []

    def __init__(self) -> None:
        super().__init__()
        self.confidence = nn.Parameter(torch.tensor(8.0))

    @classmethod
    def from_config(cls, cfg) -> dict:
        return {}

    def forward(self, batched_inputs, postprocess=None, vocabulary=None):
        self.received.append(vocabulary)
        k = len(vocabulary)
        results = []
        for x in batched_inputs:
            height, width = int(x["height"]), int(x["width"])
            mask_cls = torch.full((k, k + 1), -self.confidence.item())
            mask_cls[torch.arange(k), torch.arange(k)] = self.confidence.item()
            stripe = torch.arange(width) * k // width
            own = stripe[None, None, :] == torch.arange(k)[:, None, None]
            mask_pred = torch.where(own, 10.0, -10.0).expand(k, height, width)
            results.append(postprocess(mask_cls, mask_pred))
        return results


@pytest.fixture
def stand_in(tmp_path):
    """The stand-in registered as a meta-architecture for one test (then removed, so that nothing iterating the
    registry meets it), and a checkpoint of it."""
    META_ARCH_REGISTRY.register(VocabularyStandIn)
    VocabularyStandIn.received.clear()
    Checkpointer(VocabularyStandIn(), str(tmp_path)).save("stand_in")
    yield os.path.join(str(tmp_path), "stand_in.pth")
    META_ARCH_REGISTRY._obj_map.pop(STAND_IN)  # fvcore's Registry has no public removal


def test_vocabulary_names_the_classes_drawn(tool, stand_in, val_images, toy_env, tmp_path, capsys, caplog):
    out = tmp_path / "demo"
    path = os.path.join(val_images, min(os.listdir(val_images)))

    def argv(*flags):
        io = ["--input", path, "--output", str(out), "--opacity", "1", "--no-progress", "--overwrite"]
        model = ["MODEL.META_ARCHITECTURE", STAND_IN, "MODEL.WEIGHTS", stand_in]
        return ["--config-file", PANOPTIC, *io, *flags, *model, *LOOSE]

    assert tool.run_demo(argv("--vocabulary", " cat, dog ,traffic cone")) == 0, capsys.readouterr().err
    assert [v.names for v in VocabularyStandIn.received] == [("cat", "dog", "traffic cone")]
    assert VocabularyStandIn.received[0].thing_ids == (0, 1, 2)
    image = read_image(path)
    shown, overlay, legend = panels(read_rgb(out / (os.path.basename(path)[:-4] + ".png")), image)
    palette = default_palette(3)
    expected = V.draw_legend(["cat", "dog", "traffic cone"], palette, 256)
    np.testing.assert_array_equal(legend[:, : expected.shape[1]], expected)
    for k in range(3):  # stripe k in the colour of typed class k
        stripe = overlay[:, k * 256 // 3 + 4 : (k + 1) * 256 // 3 - 4]
        assert is_color(stripe, palette[k]).mean() > 0.6
    # without --vocabulary the model is asked for the test set's classes, as in evaluation
    VocabularyStandIn.received.clear()
    assert tool.run_demo(argv()) == 0
    assert [v.names for v in VocabularyStandIn.received] == [tuple(TOY_CLASSES)]
    # the open-vocabulary (FreeSeg) figure says so too when no segment passes the thresholds
    caplog.clear()
    assert tool.run_demo([*argv("--vocabulary", "cat,dog"), "MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD", "1.0"]) == 0
    assert "no panoptic segment passed MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD 1 " in caplog.text
    shown, overlay, note = panels(read_rgb(out / (os.path.basename(path)[:-4] + ".png")), image)
    np.testing.assert_array_equal(overlay, shown)
    assert note.shape[1] > 0 and (note != V.BACKGROUND).any()
    # a vocabulary without a name is one line naming the flag
    capsys.readouterr()
    assert tool.run_demo(argv("--vocabulary", " , ")) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --vocabulary ' , ': ") and "\n" not in err, err
