"""tools/run_freemask_pipeline.py end to end on the shrunk toy dataset, with every schedule cut to a few iterations.

One pipeline run (about 60 s of CPU) is shared by the tests of the default pipeline: the table, the files the FreeMask
tools wrote, a re-run that skips every step, and a re-run with other settings that stops. A second, shorter run
(``--generate-tiny --only joint_resampled``) checks that the generate step's pairs are the ones the filter, the
re-sampler and the joint training read.
"""

import importlib.util
import json
import os
import re
import shutil

import pytest
from script_runner import run_script

from freemask.data.datasets.synthetic import read_manifest
from freemask.toy.pipeline import GENERATED_DATASETS, PipelineError, Step, scaled_schedule, select_steps
from freemask.toy.pipeline_report import NO_DEFECTS, ROWS

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(REPO, "tools", "run_freemask_pipeline.py")
SMALL = [
    "--iters-scale", "0.01", "DATALOADER.NUM_WORKERS", "0", "INPUT.MIN_SIZE_TRAIN", "(64,)",
    "INPUT.CROP.SIZE", "[64, 64]", "INPUT.MIN_SIZE_TEST", "64",
    "MODEL.SEM_SEG_HEAD.CONVS_DIM", "32", "MODEL.SEM_SEG_HEAD.HEAD_DIM", "32",
]  # fmt: skip
NUMBER = r"[+-]?\d+\.\d+"


def run_tool(output_root, datasets, *extra):
    args = ["--output-root", output_root, "--datasets-root", datasets, *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return run_script([TOOL, *args], env=env, cwd=REPO, timeout=900)


@pytest.fixture(scope="module")
def pipeline(toy_datasets, made_once):
    """(output root, datasets root, first run's stdout) of one pipeline on a private copy of the session toy data,
    run once for the whole test run even when xdist hands this module's tests to two workers."""

    def make(base):
        shutil.copytree(toy_datasets, base / "datasets")
        proc = run_tool(str(base / "out"), str(base / "datasets"), *SMALL)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        (base / "stdout.txt").write_text(proc.stdout)

    base = made_once("freemask_pipeline", make)
    return str(base / "out"), str(base / "datasets"), (base / "stdout.txt").read_text()


def table_cells(text):
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("| ")]


def test_table_has_every_row_with_numbers(pipeline):
    output_root, _, stdout = pipeline
    text = open(os.path.join(output_root, "freemask_pipeline.md")).read()
    assert text in stdout  # printed and written
    rows = {tuple(cells[:2]): cells for cells in table_cells(text)}
    expected = [*ROWS.values(), ("real only, SEED 43 (seed noise)", "-")]
    for key in expected:
        miou, delta, pacc = rows[key][4:7]
        assert re.fullmatch(NUMBER, miou) and re.fullmatch(NUMBER, pacc), rows[key]
        assert 0 <= float(miou) <= 100 and 0 <= float(pacc) <= 100
        assert key == ROWS["real"] or re.fullmatch(NUMBER, delta), rows[key]
    assert rows[ROWS["real"]][3] == "3" and rows[ROWS["joint_raw"]][3] == "6"  # 300 and 600 iterations x0.01
    rules = [cells for cells in table_cells(text) if cells[0].startswith(("mean-margin", "quantile"))]
    assert [r[0] for r in rules] == [
        "mean-margin 1.25 (published)", "quantile clean-rate 0.02", "quantile clean-rate 0.02 boundary-band 2"
    ]  # fmt: skip
    for cells in rules:  # filtered, precision, recall, clean removed, near boundary, diagnostic; joint mIoU
        assert all(re.fullmatch(r"\d+\.\d%|n/a", c) for c in cells[1:7]) and re.fullmatch(NUMBER, cells[7]), cells
    filter_row = table_cells(text)[-1]
    assert all(re.fullmatch(r"\d+\.\d%", cell) for cell in filter_row[1:6]), filter_row
    assert re.fullmatch(r"\d+\.\d% \(\d+\.\d%\)", filter_row[7]), filter_row  # boundary share (base share)


def test_filtered_masks_and_manifest_exist(pipeline):
    _, datasets, _ = pipeline
    syn = os.path.join(datasets, "toy", "ADE20K_Synthetic")
    images = sorted(n[: -len(".jpg")] for n in os.listdir(os.path.join(syn, "images")))
    masks = os.listdir(os.path.join(syn, "annotations_filtered"))
    filtered = sorted(n[: -len(".png")] for n in masks if n.endswith(".png"))
    assert filtered == images
    assert os.path.isfile(os.path.join(syn, "class_loss.json"))
    pairs = read_manifest(os.path.join(syn, "resampled_manifest.txt"), syn)
    assert pairs and all("annotations_filtered" in mask for _, mask in pairs)


def test_rerun_skips_every_step(pipeline):
    output_root, datasets, first = pipeline
    logs = os.path.join(output_root, "steps")
    before = {n: os.path.getmtime(os.path.join(logs, n)) for n in os.listdir(logs)}
    proc = run_tool(output_root, datasets, *SMALL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    steps = re.findall(r"^\[\d+/\d+\] (\S+): (.*)$", proc.stdout, re.M)
    assert len(steps) == 14 and all(status == "done already, skipped" for _, status in steps), steps
    assert {n: os.path.getmtime(os.path.join(logs, n)) for n in os.listdir(logs)} == before
    table = open(os.path.join(output_root, "freemask_pipeline.md")).read()
    assert table in first  # same results read back


def test_other_settings_in_the_same_output_root_stop_with_one_line(pipeline):
    output_root, datasets, _ = pipeline
    proc = run_tool(output_root, datasets, "--iters-scale", "0.02", *SMALL[2:])
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: step real was run with another command") and "--force" in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_bad_override_is_one_line_before_any_step(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("run_freemask_pipeline_tool", TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.main(["--output-root", str(tmp_path / "out"), "SOLVER.BASE_LR_TYPO", "1"]) == 1
    assert capsys.readouterr().err == (
        "error: command line: unknown config key SOLVER.BASE_LR_TYPO; did you mean SOLVER.BASE_LR?\n"
    )
    assert not os.path.exists(tmp_path / "out")


def test_schedule_scaling_and_mode_flags():
    config = os.path.join(REPO, "configs", "toy", "semantic-segmentation", "semantic_fpn_R18_toy_joint.yaml")
    assert scaled_schedule(config, [], 1.0) == []
    scaled = scaled_schedule(config, [], 0.1)
    assert scaled == ["SOLVER.MAX_ITER", "60", "SOLVER.WARMUP_ITERS", "2", "SOLVER.CHECKPOINT_PERIOD", "20"]
    assert scaled_schedule(config, [], 0.001)[1::2] == ["1", "0", "1"]  # never 0 iterations or period
    step = Step("x", ["train_net.py", "--config-file", "c.yaml", "SEED", "1"], (), ("/nonexistent",), "--resume")
    assert step.command("resume") == ["train_net.py", "--resume", "--config-file", "c.yaml", "SEED", "1"]
    assert step.command("first") == step.command("redo") == step.argv


# ------------------------------------------------------------------------------------------ --generate-tiny
CHAIN = ["generate", "real", "filter", "resample", "joint_resampled"]


def tree(root):
    """Every file under ``root`` with its size and mtime: what a run must leave as it was."""
    return {
        os.path.join(d, n): (os.path.getsize(os.path.join(d, n)), os.path.getmtime(os.path.join(d, n)))
        for d, _, names in os.walk(root)
        for n in names
    }


@pytest.fixture(scope="module")
def generating(toy_datasets, tmp_path_factory):
    """(output root, datasets root, toy files before, first run) of the shortest generating run."""
    base = tmp_path_factory.mktemp("generating")
    datasets, output_root = str(base / "datasets"), str(base / "out")
    shutil.copytree(toy_datasets, datasets)
    before = tree(datasets)
    proc = run_tool(output_root, datasets, "--generate-tiny", "--only", "joint_resampled", *SMALL)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return output_root, datasets, before, proc


def test_generated_pairs_are_filtered_resampled_and_trained_on(generating):
    output_root, datasets, before, proc = generating
    ran = re.findall(r"^\[\d+/\d+\] (\S+): running", proc.stdout, re.M)
    assert ran == CHAIN, proc.stdout[-3000:]  # the toy data exists already: the data step is skipped
    # Nothing was written into the toy data: its synthetic root has no filtered masks and no manifest, so the
    # filtered and re-sampled splits below could only come from the generated root.
    assert tree(datasets) == before
    toy_syn = os.path.join(datasets, "toy", "ADE20K_Synthetic")
    assert not os.path.exists(os.path.join(toy_syn, "annotations_filtered"))
    syn = os.path.join(output_root, GENERATED_DATASETS, "toy", "ADE20K_Synthetic")
    manifest = json.load(open(os.path.join(syn, "generation_manifest.json")))
    assert manifest["settings"]["backend"] == "tiny" and manifest["settings"]["size"] == 64
    generated = {f"{stem}_seed_{seed}" for stem, seeds in manifest["pairs"].items() for seed in seeds}
    assert len(generated) == 8 * 2  # every real mask, the toy data's 2 seeds
    assert {n[: -len(".jpg")] for n in os.listdir(os.path.join(syn, "images"))} == generated
    assert not os.path.exists(os.path.join(syn, "defects"))
    for name in generated:  # the tiny model's noise, not the toy generator's pictures of the same masks
        image = open(os.path.join(syn, "images", f"{name}.jpg"), "rb").read()
        assert image != open(os.path.join(toy_syn, "images", f"{name}.jpg"), "rb").read(), name
    filtered = {n[: -len(".png")] for n in os.listdir(os.path.join(syn, "annotations_filtered")) if n.endswith(".png")}
    assert filtered == generated
    stats = json.load(open(os.path.join(syn, "filter_stats.json")))
    assert stats["images"] == len(generated)
    pairs = read_manifest(os.path.join(syn, "resampled_manifest.txt"), syn)
    assert pairs and all(image.startswith(os.path.join(syn, "images", "")) for image, _ in pairs)
    assert {os.path.basename(image)[: -len(".jpg")] for image, _ in pairs} <= generated
    log = open(os.path.join(output_root, "steps", "joint_resampled.log")).read()
    assert f"Training dataset toy_syn_resampled_sem_seg_train: {len(pairs)} images" in log
    for step in CHAIN:
        record = json.load(open(os.path.join(output_root, "steps", f"{step}.json")))
        assert record["finished"] and record["datasets"] == os.path.join(output_root, GENERATED_DATASETS)
    text = open(os.path.join(output_root, "freemask_pipeline.md")).read()
    assert "painted by `freemask generate --backend tiny`" in text
    rows = {tuple(cells[:2]): cells for cells in table_cells(text)}
    joint = rows[ROWS["joint_resampled"]]
    assert joint[2] == str(len(pairs)) and re.fullmatch(NUMBER, joint[4]), joint
    assert rows[ROWS["joint_raw"]][4] == "n/a"  # not selected by --only
    published = next(cells for cells in table_cells(text) if cells[0].startswith("mean-margin"))
    assert published[1] == f"{100 * stats['overall']['fraction']:.1f}%" and published[2] == NO_DEFECTS
    assert f"({NO_DEFECTS}; the filter removed {published[1]} of their labelled pixels)" in text


def test_generating_rerun_skips_and_other_data_stops(generating, tmp_path):
    output_root, datasets, _, _ = generating
    proc = run_tool(output_root, datasets, "--generate-tiny", "--only", "joint_resampled", *SMALL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    steps = re.findall(r"^\[\d+/\d+\] (\S+): (.*)$", proc.stdout, re.M)
    assert [n for n, _ in steps] == ["data", *CHAIN] and all(s == "done already, skipped" for _, s in steps), steps
    proc = run_tool(output_root, datasets, "--only", "real", *SMALL)  # same commands, the toy generator's images
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: step real was run with another command") and "--force" in proc.stderr
    assert f"with DETECTRON2_DATASETS={os.path.join(output_root, GENERATED_DATASETS)}" in proc.stderr
    assert proc.stderr.count("\n") == 1
    proc = run_tool(output_root, str(tmp_path / "other"), "--generate-tiny", *SMALL)  # other real images
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    generated_real = os.path.join(output_root, GENERATED_DATASETS, "toy", "ADEChallengeData2016")
    assert proc.stderr.startswith(f"error: {generated_real} links to {datasets}"), proc.stderr


def test_select_steps_takes_what_a_step_needs():
    steps = [Step(n, [n], needs, ()) for n, needs in [("a", ()), ("b", ("a",)), ("c", ("a",)), ("d", ("b",))]]
    assert [s.name for s in select_steps(steps, ["d"])] == ["a", "b", "d"]
    assert select_steps(steps, []) == steps
    with pytest.raises(PipelineError, match="no step named x; the steps are a, b, c, d"):
        select_steps(steps, ["x"])
