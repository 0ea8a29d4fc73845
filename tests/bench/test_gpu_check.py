"""bench/gpu_check.sh (every GPU measurement in one call) and bench/gpu_wheels.sh: valid bash, a bad argument is
refused before anything runs, and every script, config and test file they name exists (a rename would otherwise
surface only on the GPU machine). The CPU parts run with ``--dry-run`` (about a minute; figures in the closing notes
of the session that wrote it), which the suite does not repeat."""

import os
import re
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = ("bench/gpu_check.sh", "bench/gpu_wheels.sh")


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_are_valid_bash(script):
    subprocess.run(["bash", "-n", os.path.join(REPO, script)], check=True)


def test_unknown_argument_is_refused_before_any_step(tmp_path):
    proc = subprocess.run(["bash", os.path.join(REPO, "bench/gpu_check.sh"), "--fast"], capture_output=True,
                          text=True, env={**os.environ, "OUT": str(tmp_path)})  # fmt: skip
    assert proc.returncode == 2 and "usage: bash bench/gpu_check.sh [--dry-run]" in proc.stderr
    assert not os.listdir(tmp_path)  # no report started


def test_every_file_the_check_names_exists():
    text = open(os.path.join(REPO, "bench/gpu_check.sh")).read()
    named = set(re.findall(r"\b((?:bench|tests|configs|ops)/[\w./-]+\.(?:py|yaml))\b", text))
    assert {"bench/ms_deform_attn.py", "bench/train_step.py", "bench/inference.py", "bench/filter_throughput.py",
            "tests/modeling/ops/test_ms_deform_attn_cuda.py", "tests/modeling/ops/test_ms_deform_attn_cuda_stress.py",
            "configs/toy/semantic-segmentation/mask2former_R18_toy.yaml"} <= named  # fmt: skip
    missing = sorted(path for path in named if not os.path.isfile(os.path.join(REPO, path)))
    assert not missing


def gpu_steps(text):
    """(name, limit) of every GPU step the script declares with ``gpu NAME LIMIT COMMAND...``."""
    return [(name, int(limit)) for name, limit in re.findall(r'^gpu "([^"]+)" (\d+) ', text, flags=re.M)]


def test_gpu_step_limits_fit_in_eight_minutes():
    text = open(os.path.join(REPO, "bench/gpu_check.sh")).read()
    fixed = int(re.search(r"^FIXED_LIMITS=(\d+)", text, flags=re.M).group(1))
    always = [int(x) for x in re.findall(r'step "(?:carried wheels|environment)" (\d+) ', text)]
    assert sum(always) == fixed  # the steps both modes run are counted once
    steps = gpu_steps(text)
    assert len(steps) == 8 and fixed + sum(limit for _, limit in steps) <= 480


def test_issue16_measurements_are_in_the_gpu_run():
    """v2 against v3 and the PyTorch path, fp32 against mixed, TF32 on and off (toy loss curve and Swin-T), the
    Swin-T 512 batch-16 step in fp32, fp32+TF32 and bf16 for 50 steps."""
    text = open(os.path.join(REPO, "bench/gpu_check.sh")).read()
    variants = re.search(r"^TRAIN_VARIANTS=(\S+)", text, flags=re.M).group(1).split(",")
    assert {"fp32", "fp32+tf32", "bf16", "bf16+mixed", "bf16+mixed+v3", "fp32+pt"} <= set(variants)
    assert "--variants fp32,fp32+tf32 --warmup 1 --iters 199 --loss-every 20" in text  # 200 toy steps
    assert '--variants "$TRAIN_VARIANTS" --warmup 2 --iters 48' in text  # 50 steps: the loss after 50
    bench = open(os.path.join(REPO, "bench/ms_deform_attn.py")).read()
    assert 'IMPLS = ("pytorch", "v2", "v3")' in bench and '"mixed": (torch.bfloat16, torch.float32)' in bench


def test_dry_run_lists_the_gpu_plan_before_running_anything(tmp_path):
    """With a python that fails at once, the dry run still writes the whole GPU plan (then reports failed steps)."""
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": "false"}
    proc = subprocess.run(["bash", os.path.join(REPO, "bench/gpu_check.sh"), "--dry-run"], capture_output=True,
                          text=True, env=env, timeout=120)  # fmt: skip
    assert proc.returncode == 1 and "Failed steps" in proc.stdout
    report = (tmp_path / "gpu_check.md").read_text()
    text = open(os.path.join(REPO, "bench/gpu_check.sh")).read()
    for name, limit in gpu_steps(text):
        assert f"- {name}, limit {limit} s: " in report
    assert "step limits in all: " in report
