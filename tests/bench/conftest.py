"""What the bench tests share: running a bench script as the user does, reading its table, loading it as a module.

Given as fixtures so that no test module imports another (pytest's rootdir-relative imports of test modules break
as soon as two folders hold a module of the same name)."""

import importlib.util
import os
import subprocess
from types import ModuleType
from typing import Callable, List

import pytest
from script_runner import run_script

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run_bench(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"}
    proc = run_script([os.path.join(REPO, "bench", script), *args], env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 0, f"{script} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _table_rows(stdout: str) -> List[List[str]]:
    """Cells of the github-format table's data rows (header and separator left out)."""
    lines = [line for line in stdout.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def _load_script(name: str) -> ModuleType:
    """The script as a module, so argument errors are checked in this process (no second interpreter start-up)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", os.path.join(REPO, "bench", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def run_bench() -> Callable[..., subprocess.CompletedProcess]:
    """``run_bench(script, *args)``: the script in a subprocess (one thread), asserting that it succeeded."""
    return _run_bench


@pytest.fixture
def table_rows() -> Callable[[str], List[List[str]]]:
    return _table_rows


@pytest.fixture
def load_script() -> Callable[[str], ModuleType]:
    return _load_script


@pytest.fixture
def bench_main(capsys, monkeypatch) -> Callable[..., str]:
    """``bench_main(name, *args)``: the script's main in this process, from the repository root as the command runs;
    its stdout."""

    def run(name: str, *args: str) -> str:
        monkeypatch.chdir(REPO)
        _load_script(name).main(list(args))
        return capsys.readouterr().out

    return run
