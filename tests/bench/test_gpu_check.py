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
            "tests/modeling/test_ms_deform_attn_cuda.py"} <= named  # fmt: skip
    missing = sorted(path for path in named if not os.path.isfile(os.path.join(REPO, path)))
    assert not missing
