"""tools/generate_syn.py as a user runs it: argument checks and one-line errors before any model is built, and
--copies-from choosing exactly the pairs tools/resample_syn.py draws."""

import hashlib
import importlib
import json
import os
import pathlib
import re
import shlex
import shutil
import signal
import time

import cv2
import numpy as np
import pytest
import torch
from script_runner import run_script

from freemask.data.datasets.synthetic import load_synthetic, read_manifest
from freemask.generation.run import resampled_pairs
from freemask.synthetic.class_loss import ClassLoss, write_class_loss
from freemask.synthetic.sources import SourceSpec
from freemask.utils.forked_script import start_script

REPO = pathlib.Path(__file__).resolve().parents[2]
NUM_CLASSES = 6


def load_tool(name):
    return importlib.import_module(f"freemask.commands.{name}")


@pytest.fixture(scope="module")
def generate_syn():
    return load_tool("generate")


@pytest.fixture(scope="module")
def resample_syn():
    return load_tool("resample")


def raw_masks(folder, count, seed=0, shape=(24, 32)):
    """Raw ADE-style masks (0 = unlabelled, class k as k + 1) with varied class mixes, hence varied hardness."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        classes = rng.choice(NUM_CLASSES + 1, size=rng.integers(1, 4), replace=False)
        cv2.imwrite(os.path.join(folder, f"img{i:02d}.png"), rng.choice(classes, size=shape).astype(np.uint8))
    return folder


def class_loss_file(path):
    means = [0.1, 0.9, None, 0.4, 2.0, 0.05]
    names = [f"c{i}" for i in range(NUM_CLASSES)]
    write_class_loss(path, ClassLoss("test", 255, names, [10] * NUM_CLASSES, means))
    return path


def test_seeds_accept_a_range_a_list_or_a_count(generate_syn):
    assert generate_syn.parse_seeds("42-61") == list(range(42, 62))
    assert generate_syn.parse_seeds("20") == list(range(42, 62))
    assert generate_syn.parse_seeds("45,42") == [42, 45]
    for bad in ("x", "42,42", "0", "61-42"):
        with pytest.raises(Exception, match="seed|range"):
            generate_syn.parse_seeds(bad)


def _error(generate_syn, capsys, argv):
    """Exit code and stderr lines; an error met in the worker (in this process with one process) exits it."""
    try:
        code = generate_syn.main(argv)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err.strip().splitlines()


def test_missing_weights_and_unwritable_output_are_one_line_errors(generate_syn, tmp_path, capsys):
    masks = raw_masks(str(tmp_path / "real"), 2)
    base = ["--real-mask-path", masks, "--reduce-zero-label", "--classes", "toy_sem_seg_train"]
    code, lines = _error(
        generate_syn,
        capsys,
        [*base, "--output", str(tmp_path / "o"), "--weights", str(tmp_path / "none.ckpt"), "--config-dir", masks],
    )
    assert code == 1 and len(lines) == 1 and "none.ckpt does not exist" in lines[0] and lines[0].startswith("error:")
    code, lines = _error(
        generate_syn,
        capsys,
        [
            *base,
            "--output",
            str(tmp_path / "o"),
            "--backend",
            "controlnet",
            "--weights",
            "lllyasviel/sd-controlnet-seg",
            "--config-dir",
            masks,
        ],
    )
    assert code == 1 and len(lines) == 1 and "looks like a Hugging Face hub name" in lines[0]
    (tmp_path / "a_file").write_text("")
    code, lines = _error(generate_syn, capsys, [*base, "--backend", "tiny", "--output", str(tmp_path / "a_file" / "o")])
    assert code == 1 and len(lines) == 1 and "is a file, not a folder" in lines[0]
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not os.access(locked, os.W_OK):  # root writes anywhere: then only the case above is checked
            code, lines = _error(generate_syn, capsys, [*base, "--backend", "tiny", "--output", str(locked / "out")])
            assert code == 1 and len(lines) == 1 and "not writable" in lines[0]
    finally:
        locked.chmod(0o700)


def test_a_mask_with_labels_outside_the_classes_stops_before_generating(generate_syn, tmp_path, capsys):
    masks = raw_masks(str(tmp_path / "real"), 3)
    cv2.imwrite(os.path.join(masks, "img01.png"), np.full((8, 8), 9, np.uint8))
    output = tmp_path / "out"
    argv = ["--real-mask-path", masks, "--reduce-zero-label", "--classes", "toy_sem_seg_train", "--backend", "tiny"]
    code, lines = _error(generate_syn, capsys, [*argv, "--output", str(output)])
    assert code == 1 and len(lines) == 1
    assert "img01.png: stored labels 9 are outside the 6 classes" in lines[0]
    assert not output.exists()


def test_the_real_mask_folder_is_never_an_output(generate_syn, tmp_path, capsys):
    masks = raw_masks(str(tmp_path / "annotations"), 2)
    argv = ["--real-mask-path", masks, "--reduce-zero-label", "--classes", "toy_sem_seg_train", "--backend", "tiny"]
    code, lines = _error(generate_syn, capsys, [*argv, "--output", str(tmp_path)])
    assert code == 1 and "inputs are never overwritten" in lines[0]


def _manifest_pairs(root):
    pairs = read_manifest(os.path.join(root, "resampled_manifest.txt"), root)
    return sorted(tuple(os.path.basename(image)[: -len(".jpg")].rsplit("_seed_", 1)) for image, _ in pairs)


def _placeholder_pairs(root, pairs):
    for sub in ("images", "annotations"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    for stem, seed in pairs:
        for sub, ext in (("images", ".jpg"), ("annotations", ".png")):
            open(os.path.join(root, sub, f"{stem}_seed_{seed}{ext}"), "wb").close()


def test_copies_from_chooses_the_seeds_the_resampler_draws_and_it_takes_them_all(resample_syn, tmp_path, capsys):
    masks = raw_masks(str(tmp_path / "real"), 12)
    loss = class_loss_file(str(tmp_path / "class_loss.json"))
    seeds = list(range(42, 50))
    real = SourceSpec(mask_dir=masks, reduce_zero_label=True).real_masks()
    chosen = resampled_pairs(real, seeds, loss, max_copies=8, draw_seed=7)
    counts = [sum(1 for s, _ in chosen if s == stem) for stem in sorted(real.paths)]
    assert 1 <= min(counts) < max(counts) <= 8 and len(chosen) < 12 * 8

    def resample(root):
        argv = ["--real-mask-path", masks, "--reduce-zero-label", "--class-loss", loss, "--max-copies", "8"]
        argv += ["--syn-img-path", f"{root}/images", "--syn-mask-path", f"{root}/annotations", "--seed", "7"]
        assert resample_syn.main([*argv, "--no-progress", "--workers", "1"]) == 0
        return _manifest_pairs(root)

    full = str(tmp_path / "full")
    _placeholder_pairs(full, [(stem, seed) for stem in real.paths for seed in seeds])
    expected = sorted((stem, str(seed)) for stem, seed in chosen)
    assert resample(full) == expected  # the resampler's own draw from every seed
    only = str(tmp_path / "only")
    _placeholder_pairs(only, chosen)
    assert resample(only) == expected  # and from just these: all taken, none short
    assert "fewer seeds than their copies" not in capsys.readouterr().out
    other = resampled_pairs(real, seeds, loss, max_copies=8, draw_seed=8)
    assert other != chosen  # the draw seed matters: the test would see a wrong one


# ------------------------------------------------------------------ the tool end to end, tiny random model on CPU

TOOL = str(REPO / "tools" / "generate_syn.py")
TINY = ["--backend", "tiny", "--size", "64", "--steps", "2", "--no-progress"]


def tool_env(datasets):
    return {**os.environ, "DETECTRON2_DATASETS": datasets, "OMP_NUM_THREADS": "1"}


@pytest.fixture
def generate(generate_syn, toy_datasets, monkeypatch):
    """The tool in this process (its imports are paid once); the multi-process and kill tests start the command."""
    monkeypatch.setenv("DETECTRON2_DATASETS", toy_datasets)

    def run(*args):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as the reference: the thread count changes float32 sums, so a few 8-bit pixels
        try:
            assert generate_syn.main(list(args)) == 0
        finally:
            torch.set_num_threads(threads)

    return run


def snapshot(root):
    files = {}
    for folder, _, names in os.walk(root):
        for name in names:
            with open(os.path.join(folder, name), "rb") as f:
                files[os.path.relpath(os.path.join(folder, name), root)] = hashlib.sha256(f.read()).hexdigest()
    return files


@pytest.fixture(scope="module")
def reference(generate_syn, toy_datasets, tmp_path_factory):
    """The toy masks x 2 seeds generated once, one process, batch 1; (output root, snapshot)."""
    root = str(tmp_path_factory.mktemp("generated") / "one")
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DETECTRON2_DATASETS", toy_datasets)
        # One thread, as the subprocesses compared with it (OMP_NUM_THREADS=1): on CPU the thread count changes
        # float32 sums, and so a few 8-bit pixels, whatever the tool does.
        torch.set_num_threads(1)
        try:
            argv = ["--real-dataset", "toy_sem_seg_train", "--output", root, "--seeds", "2", *TINY, "--batch-size", "1"]
            assert generate_syn.main(argv) == 0
        finally:
            torch.set_num_threads(threads)
    return root, snapshot(root)


def test_the_output_is_a_synthetic_root_the_registered_splits_read(reference):
    root, files = reference
    masks = sorted(f for f in files if f.startswith("annotations/"))
    assert len(masks) == 16 and sum(f.startswith("images/") for f in files) == 16  # 8 masks x seeds 42, 43
    records = load_synthetic(root, reduce_zero_label=True)
    assert [(r["real_stem"], r["seed"]) for r in records][:2] == [
        (records[0]["real_stem"], 42),
        (records[0]["real_stem"], 43),
    ]
    image = cv2.imread(records[0]["file_name"])
    mask = cv2.imread(records[0]["sem_seg_file_name"], cv2.IMREAD_UNCHANGED)
    assert image.shape == (64, 64, 3) and mask.shape == (64, 64) and mask.max() <= NUM_CLASSES  # raw, as the toy
    with open(os.path.join(root, "generation_manifest.json")) as f:
        manifest = json.load(f)
    assert manifest["num_pairs"] == 16 and manifest["settings"]["backend"] == "tiny"
    assert manifest["settings"]["steps"] == 2 and manifest["settings"]["guidance"] == 2.0


def test_batch_size_and_process_count_do_not_change_a_byte(reference, toy_datasets, tmp_path):
    root = str(tmp_path / "two")
    args = ["--real-dataset", "toy_sem_seg_train", "--output", root, "--seeds", "2", *TINY, "--batch-size", "3"]
    proc = run_script([TOOL, *args, "--num-gpus", "2"], env=tool_env(toy_datasets), cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert snapshot(root) == reference[1]


def test_a_killed_run_finishes_only_the_missing_pairs_identically(reference, toy_datasets, generate, tmp_path, caplog):
    root = str(tmp_path / "killed")
    args = ["--real-dataset", "toy_sem_seg_train", "--output", root, "--seeds", "2", *TINY, "--batch-size", "1"]
    process = start_script([TOOL, *args], stdout=os.devnull, stderr=os.devnull, env=tool_env(toy_datasets), cwd=REPO)
    masks = os.path.join(root, "annotations")
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        if os.path.isdir(masks) and len(os.listdir(masks)) >= 3:
            break
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    partial = len([n for n in os.listdir(masks) if n.endswith(".png")])
    assert 0 < partial < 16, f"the kill came too late ({partial} of 16 pairs written)"
    caplog.set_level("INFO", logger="freemask.generation")
    generate(*args)
    assert f"Generating {16 - partial} pairs into {root} ({partial} of 16 already there)" in caplog.text
    assert snapshot(root) == reference[1]


def test_other_settings_are_refused_in_one_line(reference, generate_syn, toy_datasets, tmp_path, capsys, monkeypatch):
    root = str(tmp_path / "settings")
    shutil.copytree(reference[0], root)
    monkeypatch.setenv("DETECTRON2_DATASETS", toy_datasets)
    argv = ["--real-dataset", "toy_sem_seg_train", "--output", root, "--seeds", "2", *TINY, "--guidance", "3"]
    code, lines = _error(generate_syn, capsys, argv)
    assert code == 1 and len(lines) == 1, lines
    assert "holds pairs generated with other settings" in lines[0] and "guidance: 2.0 -> 3.0" in lines[0]
    assert snapshot(root) == reference[1]


def test_copies_from_generates_exactly_the_resampled_pairs(toy_datasets, generate, tmp_path):
    loss = class_loss_file(str(tmp_path / "class_loss.json"))
    root = str(tmp_path / "copies")
    generate("--real-dataset", "toy_sem_seg_train", "--output", root, "--seeds", "42-45", *TINY,
             "--copies-from", loss, "--max-copies", "4", "--draw-seed", "5", "--batch-size", "4")  # fmt: skip
    expected = resampled_pairs(SourceSpec("toy_sem_seg_train").real_masks(), range(42, 46), loss, 4, draw_seed=5)
    written = sorted((r["real_stem"], r["seed"]) for r in load_synthetic(root, reduce_zero_label=True))
    assert written == list(expected) and len(written) < 8 * 4


def documented_toy_commands():
    """The toy commands of docs/GENERATION.md's "On the toy data, on CPU" section, as argument lists."""
    text = (REPO / "docs" / "GENERATION.md").read_text()
    section = text.split("## On the toy data, on CPU", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            tokens = shlex.split(line, comments=True)
            if tokens[:1] == ["python"] and any("toy" in t for t in tokens):
                commands.append(tokens[1:])
    return commands


def test_the_documented_toy_chain(toy_datasets, generate_syn, resample_syn, tmp_path, monkeypatch):
    """generate -> filter_syn -> resample_syn as docs/GENERATION.md writes them (output/ moved to a temporary folder, a
    randomly initialised filter model: the chain is checked, not the filter's quality), then --copies-from gives the
    resampler's choice."""
    from freemask.checkpoint.checkpointer import Checkpointer
    from freemask.engine.defaults import setup_cfg
    from freemask.modeling import build_model

    config = str(REPO / "configs" / "toy" / "semantic-segmentation" / "semantic_fpn_R18_toy.yaml")
    weights = str(tmp_path / "model_final.pth")
    Checkpointer(build_model(setup_cfg(config, []).clone()), save_dir=str(tmp_path)).save("model_final")
    monkeypatch.setenv("DETECTRON2_DATASETS", toy_datasets)
    monkeypatch.chdir(REPO)
    commands = documented_toy_commands()
    assert [c[0] for c in commands] == [
        "tools/generate_syn.py",
        "tools/filter_syn.py",
        "tools/resample_syn.py",
        "tools/generate_syn.py",
    ]
    out = str(tmp_path / "output")

    def localised(args):
        args = [a.replace("output/", f"{out}/") for a in args]
        if "MODEL.WEIGHTS" in args:
            args[args.index("MODEL.WEIGHTS") + 1] = weights
        return ["--no-progress", *args]

    generate, filter_cmd, resample, drawn = (localised(c[1:]) for c in commands)
    assert generate_syn.main(generate) == 0
    filter_syn = load_tool("filter")
    parser = filter_syn.argument_parser()
    parsed = parser.parse_args(["--num-workers", "0", *filter_cmd])
    filter_syn.check_arguments(parser, parsed)
    filter_syn.check_before_launch(parsed)
    filter_syn.filter_masks(parsed)
    assert resample_syn.main(resample) == 0
    full = _manifest_pairs(f"{out}/toy_generated")
    assert len(full) < 8 * 4 and len({stem for stem, _ in full}) == 8
    assert generate_syn.main(drawn) == 0
    root = f"{out}/toy_generated_drawn"
    written = sorted((r["real_stem"], str(r["seed"])) for r in load_synthetic(root, reduce_zero_label=True))
    assert written == full  # only the drawn pairs were generated
    argv = [*resample, "--syn-img-path", f"{root}/images", "--syn-mask-path", f"{root}/annotations"]
    assert resample_syn.main(argv) == 0 and _manifest_pairs(root) == full  # and the resampler takes them all
