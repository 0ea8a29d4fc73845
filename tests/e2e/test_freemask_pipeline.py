"""tools/run_freemask_pipeline.py end to end on the shrunk toy dataset, with every schedule cut to a few iterations.

One pipeline run (about 60 s of CPU) is shared by the tests of this module: the table, the files the FreeMask tools
wrote, a re-run that skips every step, and a re-run with other settings that stops.
"""

import importlib.util
import os
import re
import shutil
import subprocess
import sys

import pytest

from freemask.data.datasets.synthetic import read_manifest
from freemask.synthetic.toy_pipeline import Step, scaled_schedule
from freemask.synthetic.toy_pipeline_report import ROWS

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
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=900)


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
    assert len(steps) == 10 and all(status == "done already, skipped" for _, status in steps), steps
    assert {n: os.path.getmtime(os.path.join(logs, n)) for n in os.listdir(logs)} == before
    table = open(os.path.join(output_root, "freemask_pipeline.md")).read()
    assert table in first  # same results read back


def test_other_settings_in_the_same_output_root_stop_with_one_line(pipeline):
    output_root, datasets, _ = pipeline
    proc = run_tool(output_root, datasets, "--iters-scale", "0.02", *SMALL[2:])
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: step real was run with another command") and "--force" in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_bad_override_is_one_line_before_any_step(tmp_path):
    spec = importlib.util.spec_from_file_location("run_freemask_pipeline_tool", TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    with pytest.raises(SystemExit) as error:
        tool.main(["--output-root", str(tmp_path / "out"), "SOLVER.BASE_LR_TYPO", "1"])
    assert str(error.value.code) == (
        "error: command line: unknown config key SOLVER.BASE_LR_TYPO; did you mean SOLVER.BASE_LR?"
    )
    assert not os.path.exists(tmp_path / "out")


def test_schedule_scaling_and_mode_flags():
    config = os.path.join(REPO, "configs", "toy", "semantic_fpn_R18_toy_joint.yaml")
    assert scaled_schedule(config, [], 1.0) == []
    scaled = scaled_schedule(config, [], 0.1)
    assert scaled == ["SOLVER.MAX_ITER", "60", "SOLVER.WARMUP_ITERS", "2", "SOLVER.CHECKPOINT_PERIOD", "20"]
    assert scaled_schedule(config, [], 0.001)[1::2] == ["1", "0", "1"]  # never 0 iterations or period
    step = Step("x", ["train_net.py", "--config-file", "c.yaml", "SEED", "1"], (), ("/nonexistent",), "--resume")
    assert step.command("resume") == ["train_net.py", "--resume", "--config-file", "c.yaml", "SEED", "1"]
    assert step.command("first") == step.command("redo") == step.argv
