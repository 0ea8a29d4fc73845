"""tools/filter_syn.py on the toy dataset: outputs, planted defects, resuming, several processes, bad input.

Most runs call the tool's ``main`` in this process (no interpreter start-up); the kill and multi-process tests run
the real command in a subprocess.
"""

import hashlib
import json
import logging
import math
import os
import shutil
import signal
import time

import cv2
import numpy as np
import pytest
import torch
from script_runner import run_script

from freemask.commands import filter as filter_command
from freemask.data.catalog import DatasetCatalog
from freemask.errors import UserError, one_line
from freemask.synthetic.class_loss import read_class_loss
from freemask.synthetic.filter.rule import quantile_thresholds
from freemask.synthetic.loss_histograms import read_loss_histograms
from freemask.toy.defect_score import near_boundary
from freemask.toy.generator import ToyParams, generate_toy_dataset
from freemask.utils.forked_script import start_script

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(REPO, "tools", "filter_syn.py")
CONFIG = os.path.join(REPO, "configs", "toy", "semantic-segmentation", "semantic_fpn_R18_toy.yaml")
SMALL = ["MODEL.SEM_SEG_HEAD.CONVS_DIM", "32", "MODEL.SEM_SEG_HEAD.HEAD_DIM", "32"]
SYN = ("toy", "ADE20K_Synthetic")


@pytest.fixture(scope="module")
def tool():
    return filter_command


@pytest.fixture(scope="module")
def toy_model(trained_once):
    """A Semantic FPN trained for 40 iterations on the real toy images at 64 px (about 15 s of CPU), once per run."""
    overrides = ["SOLVER.MAX_ITER", "40", "SOLVER.BASE_LR", "0.002", "SOLVER.CHECKPOINT_PERIOD", "1000"]
    overrides += ["TEST.EVAL_PERIOD", "0", "DATASETS.TEST", "()", "DATALOADER.NUM_WORKERS", "0"]
    overrides += ["INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.CROP.SIZE", "[64, 64]", *SMALL]
    run = trained_once("filter_model", "--config-file", CONFIG, *overrides)
    return os.path.join(run.output_dir, "model_final.pth")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One CPU thread here and in the subprocesses: float results on CPU depend on the thread count (not on the
    number of processes), and one thread is also the fastest on a loaded two-core CI machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def filtered_toy(tool, toy_model, toy_datasets, made_once):
    """A copy of the toy datasets filtered once by the tool (once per run, whichever xdist worker asks first);
    (root, snapshot of its results)."""

    def make(folder):
        shutil.copytree(toy_datasets, folder / "datasets")
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("DETECTRON2_DATASETS", str(folder / "datasets"))
            run_tool(tool, argv(toy_model, "--per-image-stats"))

    root = str(made_once("filtered_toy", make) / "datasets")
    return root, snapshot(root)


@pytest.fixture
def data(filtered_toy, tmp_path, monkeypatch):
    """A private copy of the filtered toy datasets, where a test may re-run the tool."""
    root = str(tmp_path / "datasets")
    shutil.copytree(filtered_toy[0], root)
    monkeypatch.setenv("DETECTRON2_DATASETS", root)
    return root


def argv(model, *extra):
    names = ["--real-dataset", "toy_sem_seg_train", "--syn-dataset", "toy_syn_sem_seg_train"]
    flags = ["--batch-size", "3", "--num-workers", "0", "--no-progress"]
    return ["--config-file", CONFIG, *names, *flags, *extra, "MODEL.WEIGHTS", model, *SMALL]


def run_tool(tool, args):
    """What the command runs in one process: the early checks, then the tool's main."""
    parser = tool.argument_parser()
    parsed = parser.parse_args(args)
    tool.check_arguments(parser, parsed)
    tool.check_before_launch(parsed)
    tool.filter_masks(parsed)


def tool_error(tool, args) -> str:
    """The line the command prints for a user error."""
    with pytest.raises(UserError) as error:
        run_tool(tool, args)
    message = f"error: {one_line(error.value)}"
    assert "\n" not in message, message
    return message


def syn_path(root, *parts):
    return os.path.join(root, *SYN, *parts)


def snapshot(root):
    """Bytes of every result: the filtered masks, class_loss.json, its histograms and filter_stats.json."""
    names = ("class_loss.json", "class_loss_histograms.json", "filter_stats.json")
    files = {n: open(syn_path(root, n), "rb").read() for n in names}
    folder = syn_path(root, "annotations_filtered")
    files.update({n: open(os.path.join(folder, n), "rb").read() for n in os.listdir(folder) if not n.startswith(".")})
    return files


def digest(folder):
    return {n: hashlib.sha256(open(os.path.join(folder, n), "rb").read()).hexdigest() for n in os.listdir(folder)}


def read(path):
    return cv2.imread(path, cv2.IMREAD_UNCHANGED)


def test_filter_writes_masks_and_statistics_and_finds_the_planted_defects(toy_datasets, filtered_toy):
    data = filtered_toy[0]
    for folder in ("images", "annotations"):
        assert digest(syn_path(data, folder)) == digest(syn_path(toy_datasets, folder))  # inputs untouched
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DETECTRON2_DATASETS", data)
        assert len(DatasetCatalog.get("toy_syn_filtered_sem_seg_train")) == 16

    stats = json.load(open(syn_path(data, "filter_stats.json")))
    names = sorted(os.listdir(syn_path(data, "annotations")))
    per_image = [json.loads(line) for line in open(syn_path(data, "filter_stats_per_image.jsonl"))]
    assert [r["file"] for r in per_image] == names and stats["images"] == len(names) and "per_image" not in stats
    filtered = labelled = lift_hits = defects_in_labelled = 0
    for entry in per_image:
        raw = read(syn_path(data, "annotations", entry["file"]))
        out = read(syn_path(data, "annotations_filtered", entry["file"]))
        defect = read(syn_path(data, "defects", entry["file"])) > 0
        assert out.dtype == raw.dtype and out.shape == raw.shape
        changed = raw != out
        assert (out[changed] == 0).all() and (raw[changed] != 0).all()  # raw ADE masks: filtered -> 0 = unlabeled
        assert (entry["pixels"], entry["filtered"]) == ((raw != 0).sum(), changed.sum())
        assert entry["fraction"] == changed.sum() / (raw != 0).sum()
        filtered, labelled = filtered + changed.sum(), labelled + (raw != 0).sum()
        lift_hits += (changed & defect).sum()
        defects_in_labelled += (defect & (raw != 0)).sum()
    assert stats["overall"] == {"pixels": labelled, "filtered": filtered, "fraction": filtered / labelled}
    assert sum(c["filtered"] for c in stats["classes"]) == filtered
    # Better than chance: the filtered pixels hold planted defects at well above the defects' base rate.
    precision, base_rate = lift_hits / filtered, defects_in_labelled / labelled
    assert precision > 1.5 * base_rate, (precision, base_rate)

    class_loss = read_class_loss(syn_path(data, "class_loss.json"), num_classes=6)
    assert class_loss.names[0] == "sky" and class_loss.dataset == "toy_sem_seg_train"
    assert [c["threshold"] for c in stats["classes"]] == [1.25 * m for m in class_loss.mean_loss]


def test_rerun_after_a_simulated_interruption_finishes_only_missing_files_identically(
    tool, toy_model, filtered_toy, data
):
    reference = filtered_toy[1]
    folder = syn_path(data, "annotations_filtered")
    masks = sorted(n for n in os.listdir(folder) if n.endswith(".png"))
    for name in masks[::3]:
        os.remove(os.path.join(folder, name))
    log = os.path.join(folder, ".filter_records.rank0.jsonl")
    lines = open(log).read().splitlines()
    open(log, "w").write("\n".join(lines[:-4]) + "\n" + lines[-4][:10])  # records lost, last one cut mid-line
    open(os.path.join(folder, f".{masks[1]}.999.tmp"), "wb").write(b"half a png")
    os.remove(syn_path(data, "filter_stats.json"))
    kept = {n: os.stat(os.path.join(folder, n)).st_mtime_ns for n in os.listdir(folder) if n.endswith(".png")}
    class_loss_time = os.stat(syn_path(data, "class_loss.json")).st_mtime_ns

    run_tool(tool, argv(toy_model))
    assert snapshot(data) == reference
    assert {n: os.stat(os.path.join(folder, n)).st_mtime_ns for n in kept} == kept  # finished files not redone
    assert os.stat(syn_path(data, "class_loss.json")).st_mtime_ns == class_loss_time  # pass 1 not redone
    assert not [n for n in os.listdir(folder) if n.endswith(".tmp")]


def test_other_settings_need_overwrite_and_a_larger_margin_filters_a_subset(tool, toy_model, filtered_toy, data):
    first = filtered_toy[1]
    message = tool_error(tool, argv(toy_model, "--tolerance-margin", "2.0"))
    assert "tolerance_margin: 1.25 -> 2.0" in message and "--overwrite" in message
    assert snapshot(data) == first
    run_tool(tool, argv(toy_model, "--tolerance-margin", "2.0", "--overwrite"))
    second = snapshot(data)
    assert second["class_loss.json"] == first["class_loss.json"]
    fewer = 0
    for name in os.listdir(syn_path(data, "annotations")):
        raw = read(syn_path(data, "annotations", name))
        loose = cv2.imdecode(np.frombuffer(first[name], np.uint8), cv2.IMREAD_UNCHANGED) != raw
        strict = cv2.imdecode(np.frombuffer(second[name], np.uint8), cv2.IMREAD_UNCHANGED) != raw
        assert not (strict & ~loose).any()
        fewer += (loose & ~strict).sum()
    assert fewer > 0


def prepare_masks(source, target):
    """Raw ADE-style masks (0 = unlabeled, k + 1) rewritten as prepared ones (k, 255 = ignore)."""
    os.makedirs(target)
    for name in os.listdir(source):
        raw = read(os.path.join(source, name))
        cv2.imwrite(os.path.join(target, name), np.where(raw == 0, 255, raw.astype(np.int16) - 1).astype(np.uint8))


def test_folder_inputs_match_dataset_names_and_prepared_masks_get_the_ignore_label(
    tool, toy_model, filtered_toy, data, tmp_path
):
    reference = filtered_toy[1]
    real = os.path.join(data, "toy", "ADEChallengeData2016")
    folders = ["--real-img-path", f"{real}/images/training", "--real-mask-path", f"{real}/annotations/training"]
    folders += ["--syn-img-path", syn_path(data, "images")]
    flags = ["--batch-size", "3", "--num-workers", "0", "--no-progress", "--config-file", CONFIG]
    tail = ["MODEL.WEIGHTS", toy_model, *SMALL]

    raw_out = str(tmp_path / "raw_out" / "masks")
    run_tool(tool, [*folders, "--syn-mask-path", syn_path(data, "annotations"), "--reduce-zero-label", *flags,
                    "--output", raw_out, *tail])  # fmt: skip
    for name in os.listdir(syn_path(data, "annotations")):
        assert open(os.path.join(raw_out, name), "rb").read() == reference[name]
    raw_losses = read_class_loss(str(tmp_path / "raw_out" / "class_loss.json"))

    prepare_masks(f"{real}/annotations/training", str(tmp_path / "real_prepared"))
    prepare_masks(syn_path(data, "annotations"), str(tmp_path / "syn_prepared"))
    folders[3] = str(tmp_path / "real_prepared")
    prepared_out = str(tmp_path / "prepared_out" / "masks")
    run_tool(tool, [*folders, "--syn-mask-path", str(tmp_path / "syn_prepared"), *flags, "--output", prepared_out,
                    *tail])  # fmt: skip
    assert read_class_loss(str(tmp_path / "prepared_out" / "class_loss.json")).mean_loss == raw_losses.mean_loss
    for name in os.listdir(syn_path(data, "annotations")):
        raw = read(syn_path(data, "annotations", name))
        filtered_raw = read(os.path.join(raw_out, name)) != raw
        prepared, out = read(str(tmp_path / "syn_prepared" / name)), read(os.path.join(prepared_out, name))
        assert np.array_equal(prepared != out, filtered_raw) and (out[filtered_raw] == 255).all()


def folder_args(data, model, syn_images, syn_masks, *extra):
    return ["--config-file", CONFIG, "--real-dataset", "toy_sem_seg_train", "--syn-img-path", syn_images,
            "--syn-mask-path", syn_masks, "--no-progress", "--num-workers", "0", *extra, "MODEL.WEIGHTS", model,
            *SMALL]  # fmt: skip


def test_bad_inputs_give_one_line_errors_naming_the_problem(tool, toy_model, data, tmp_path):
    assert "has 6" in tool_error(tool, argv(toy_model, "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "7"))
    assert "no MODEL.WEIGHTS" in tool_error(tool, argv(""))
    bad_start = argv(toy_model, "DATALOADER.START_METHOD", "thread")
    assert "DATALOADER.START_METHOD is 'thread'" in tool_error(tool, bad_start)

    images, masks = str(tmp_path / "images"), str(tmp_path / "masks")
    shutil.copytree(syn_path(data, "images"), images)
    shutil.copytree(syn_path(data, "annotations"), masks)
    out = ["--output", str(tmp_path / "out" / "masks")]
    wider = folder_args(data, toy_model, images, masks, *out, "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "7")
    wider[wider.index("--real-dataset") : wider.index("--real-dataset") + 2] = ["--class-loss", "unused.json"]
    assert "does not fit the model" in tool_error(tool, wider)  # a 6-class checkpoint in a 7-class config

    assert "pass --output" in tool_error(tool, folder_args(data, toy_model, images, masks))
    assert "never overwritten" in tool_error(tool, folder_args(data, toy_model, images, masks, "--output", masks))
    missing = tool_error(tool, folder_args(data, toy_model, images, str(tmp_path / "nowhere"), *out))
    assert "folder not found" in missing and "nowhere" in missing

    broken = str(tmp_path / "class_loss.json")
    open(broken, "w").write("{")
    assert "class_loss.json" in tool_error(tool, folder_args(data, toy_model, images, masks, *out, "--class-loss",
                                                             broken))  # fmt: skip

    names = sorted(os.listdir(masks))
    cv2.imwrite(os.path.join(masks, names[0]), np.ones((70, 64), np.uint8))
    assert "mask is 64x70 but its image" in tool_error(tool, folder_args(data, toy_model, images, masks, *out))
    os.remove(os.path.join(masks, names[0]))
    message = tool_error(tool, folder_args(data, toy_model, images, masks, *out))
    assert "have no '*.png' mask" in message and names[0].replace(".png", ".jpg") in message


def test_unwritable_output_is_one_line_before_the_model_is_built(tool, toy_model, data, tmp_path, monkeypatch):
    (tmp_path / "a_file").write_text("")
    built = []
    patched = "freemask.synthetic.filter.run.load_trained_model"
    monkeypatch.setattr(patched, lambda *a: built.append(1), raising=False)
    message = tool_error(tool, argv(toy_model, "--output", str(tmp_path / "a_file" / "masks")))
    assert message.startswith(f"error: --output {tmp_path / 'a_file' / 'masks'}: ") and "is a file" in message
    assert not built


def tool_env(data):
    return {**os.environ, "DETECTRON2_DATASETS": data, "OMP_NUM_THREADS": "1"}


def test_two_processes_give_the_same_files_as_one(toy_model, filtered_toy, data):
    one = filtered_toy[1]
    proc = run_script([TOOL, *argv(toy_model, "--num-gpus", "2", "--overwrite")], env=tool_env(data), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert snapshot(data) == one  # class losses reduced over ranks, masks and statistics all identical


def test_a_killed_run_resumes_to_the_uninterrupted_result(tool, toy_model, tmp_path, monkeypatch):
    root = str(tmp_path / "datasets")
    generate_toy_dataset(root, ToyParams(num_train=8, num_val=1, num_seeds=12, height=64, width=64))
    monkeypatch.setenv("DETECTRON2_DATASETS", root)
    args = argv(toy_model, "--batch-size", "1")
    run_tool(tool, args)
    reference = snapshot(root)
    folder = syn_path(root, "annotations_filtered")
    total = len([n for n in os.listdir(folder) if n.endswith(".png")])

    shutil.rmtree(folder)
    for name in ("class_loss.json", "filter_stats.json"):
        os.remove(syn_path(root, name))
    process = start_script([TOOL, *args], stdout=os.devnull, stderr=os.devnull, env=tool_env(root), cwd=REPO)
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        if os.path.isdir(folder) and len([n for n in os.listdir(folder) if n.endswith(".png")]) >= 3:
            break
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    partial = len([n for n in os.listdir(folder) if n.endswith(".png")])
    assert 0 < partial < total, f"the kill came too late ({partial} of {total} masks written)"

    run_tool(tool, args)
    assert snapshot(root) == reference


class LogLines(logging.Handler):
    """The filter's log messages (the freemask logger does not propagate to pytest's capture)."""

    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture
def filter_log():
    handler = LogLines()
    logger = logging.getLogger("freemask.filter")
    logger.addHandler(handler)
    yield handler.lines
    logger.removeHandler(handler)


QUANTILE = ["--rule", "quantile", "--clean-rate", "0.02"]


def diagnostic_lines(lines):
    return [line for line in lines if line.startswith("Diagnostic: on the ")]


def test_both_rules_print_the_diagnostic_and_the_quantile_rule_follows_its_histograms(
    tool, toy_model, filtered_toy, data, filter_log
):
    default = json.loads(filtered_toy[1]["filter_stats.json"])
    assert (default["rule"], default["clean_rate"], default["boundary_band"]) == ("mean-margin", None, 0)
    assert default["diagnostic"]["split"] == "training" and default["diagnostic"]["removed"] > 0
    run_tool(tool, argv(toy_model, "--overwrite"))
    assert snapshot(data) == filtered_toy[1]  # the default rule: the same files as before, diagnostic included
    assert "rule: 'mean-margin' -> 'quantile'" in tool_error(tool, argv(toy_model, *QUANTILE))

    run_tool(tool, argv(toy_model, *QUANTILE, "--overwrite"))
    stats = json.load(open(syn_path(data, "filter_stats.json")))
    histograms = read_loss_histograms(syn_path(data, "class_loss_histograms.json"), 6, "")
    expected = quantile_thresholds(histograms.per_class(), histograms.upper_edges(), 0.02).tolist()
    assert [c["threshold"] for c in stats["classes"]] == [None if math.isinf(t) else t for t in expected]
    assert stats["tolerance_margin"] is None and (stats["rule"], stats["clean_rate"]) == ("quantile", 0.02)
    for entry in stats["diagnostic"]["classes"]:  # at most 2% of each class's real pixels, by construction
        assert entry["removed"] <= 0.02 * entry["labelled"]
    assert 0 < stats["overall"]["fraction"] < default["overall"]["fraction"]
    lines = diagnostic_lines(filter_log)
    assert len(lines) == 2 and all("real images (toy_sem_seg_train) this rule would remove" in x for x in lines)
    assert f"{100 * default['diagnostic']['fraction']:.2f}% of labelled pixels" in lines[0]


def test_boundary_band_and_a_held_out_split_resume_to_the_uninterrupted_result(tool, toy_model, data, filter_log):
    args = argv(toy_model, *QUANTILE, "--boundary-band", "2", "--real-val-dataset", "toy_sem_seg_val", "--overwrite")
    run_tool(tool, args)
    reference = snapshot(data)
    reference["heldout_loss_histograms.json"] = open(syn_path(data, "heldout_loss_histograms.json"), "rb").read()
    stats = json.loads(reference["filter_stats.json"])
    assert stats["diagnostic"]["split"] == "held-out" and stats["diagnostic"]["removed_near_boundary"] == 0
    heldout = read_loss_histograms(syn_path(data, "heldout_loss_histograms.json"), 6, "")
    expected = quantile_thresholds(heldout.per_class(), heldout.upper_edges(), 0.02).tolist()
    assert [c["threshold"] for c in stats["classes"]] == [None if math.isinf(t) else t for t in expected]
    for name in os.listdir(syn_path(data, "annotations")):  # nothing within 2 px of a boundary was filtered
        raw = read(syn_path(data, "annotations", name))
        changed = raw != read(syn_path(data, "annotations_filtered", name))
        assert not (changed & near_boundary(raw, 2)).any()

    folder = syn_path(data, "annotations_filtered")
    for name in sorted(n for n in os.listdir(folder) if n.endswith(".png"))[::2]:
        os.remove(os.path.join(folder, name))
    os.remove(syn_path(data, "filter_stats.json"))
    run_tool(tool, [a for a in args if a != "--overwrite"])
    again = snapshot(data)
    again["heldout_loss_histograms.json"] = open(syn_path(data, "heldout_loss_histograms.json"), "rb").read()
    assert again == reference
    assert "held-out real images (toy_sem_seg_val)" in diagnostic_lines(filter_log)[-1]
