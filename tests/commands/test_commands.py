"""``freemask <command>`` and ``python -m freemask``: the command table, --help without torch and equal to the
script's, --version, an unknown command, the hints that name a command in both forms, the resume hint of a command,
and the toy pipeline's steps run through the package."""

import ast
import glob
import os
import re
import subprocess
import sys

import pytest

from freemask import commands
from freemask.arguments import resume_command
from freemask.commands import COMMANDS, hint
from freemask.data.catalog import DatasetCatalog
from freemask.data.errors import DatasetError
from freemask.toy import pipeline
from freemask.utils.forked_script import run_script

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Launchers another part of the project owns, wired into the table by their own change.
BLOCK_TORCH = "import runpy, sys; sys.modules['torch'] = None\n"  # importing torch then raises ImportError


def _python(code: str, *args: str, cwd: str = REPO) -> subprocess.CompletedProcess:
    """A new interpreter (start-up is what is tested) running ``code`` with ``args`` as sys.argv[1:]."""
    env = {**os.environ, "COLUMNS": "120"}  # the same help wrapping in both runs
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd, env=env)


def _words(help_text: str, program: str) -> str:
    """The help text without its program name, whitespace collapsed (argparse wraps the usage by the name's length)."""
    return " ".join(help_text.replace(f"usage: {program} ", "usage: PROGRAM ", 1).split())


@pytest.mark.parametrize("name", sorted(set(COMMANDS) - {"prepare"}))  # prepare: one launcher per dataset, test_prepare
def test_help_of_every_command_needs_no_torch_and_is_its_scripts(name):
    as_command = _python(
        BLOCK_TORCH + "runpy.run_module('freemask', run_name='__main__', alter_sys=True)",  # as python -m freemask
        name,
        "--help",
    )
    assert as_command.returncode == 0, as_command.stderr[-2000:]
    assert as_command.stdout.startswith(f"usage: python -m freemask {name} ")
    script = COMMANDS[name].script
    code = BLOCK_TORCH + "sys.argv[:] = sys.argv[1:]\nrunpy.run_path(sys.argv[0], run_name='__main__')"
    as_script = _python(code, script, "--help")
    assert as_script.returncode == 0, as_script.stderr[-2000:]
    program = os.path.basename(script)
    assert _words(as_command.stdout, f"python -m freemask {name}") == _words(as_script.stdout, program)


def test_the_table_names_every_launcher_and_each_launcher_runs_its_command():
    launchers = {os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "tools", "*.py"))}
    assert {c.script for c in COMMANDS.values()} == (launchers | {"train_net.py", "datasets/prepare_<dataset>.py"})
    for command in (c for name, c in COMMANDS.items() if name != "prepare"):  # test_prepare checks datasets/
        with open(os.path.join(REPO, command.script), encoding="utf-8") as f:
            imported = [n.module for n in ast.walk(ast.parse(f.read())) if isinstance(n, ast.ImportFrom)]
        assert imported == [f"freemask.commands.{command.module}"], command.script


def test_help_lists_the_commands_without_importing_any(tmp_path):
    code = (
        BLOCK_TORCH + "from freemask.commands import main\ncode = main(['--help'])\n"
        "print(sorted(m for m in sys.modules if m.startswith('freemask.commands.')))\nsys.exit(code)"
    )
    proc = _python(code, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: freemask <command> [arguments]")
    for name, command in COMMANDS.items():
        assert re.search(rf"^  {re.escape(name)} +{re.escape(command.summary)}$", proc.stdout, re.MULTILINE)
    assert proc.stdout.rstrip().endswith("[]")  # no command module was imported


def test_version_is_the_packages(capsys):
    with open(os.path.join(REPO, "pyproject.toml"), encoding="utf-8") as f:
        version = re.search(r'^version = "(.+)"$', f.read(), re.MULTILINE).group(1)
    assert commands.main(["--version"]) == 0
    assert capsys.readouterr().out == f"freemask {version}\n"


def test_an_unknown_command_is_one_line_with_a_did_you_mean(capsys):
    assert commands.main(["trian", "--config-file", "x.yaml"]) == 2
    assert capsys.readouterr().err == "error: unknown command 'trian'; did you mean train?\n"
    assert commands.main(["zzz"]) == 2
    assert capsys.readouterr().err == "error: unknown command 'zzz'; `freemask --help` lists the commands\n"
    assert commands.main([]) == 2 and capsys.readouterr().err.startswith("usage: freemask <command>")


def test_python_dash_m_freemask_runs_a_command_from_any_folder(tmp_path):
    """From an empty folder, as after `pip install`: make-toy writes ./datasets/toy (DETECTRON2_DATASETS unset)."""
    env = {k: v for k, v in os.environ.items() if k != "DETECTRON2_DATASETS"}
    argv = [sys.executable, "-m", "freemask", "make-toy", "--num-train", "2", "--num-val", "1", "--seeds", "1"]
    proc = subprocess.run([*argv, "--size", "32x32"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"Wrote the toy dataset to {os.path.join('datasets', 'toy')}: 2 train, 1 val")
    assert os.path.isfile(tmp_path / "datasets" / "toy" / "meta.json")


def test_a_hint_names_the_installed_command_and_the_checkout_script():
    assert hint("make-toy", "--force") == (
        "`freemask make-toy --force` (in a checkout: `python tools/make_toy_dataset.py --force`)"
    )


def test_the_missing_toy_dataset_error_names_both_forms(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    with pytest.raises(DatasetError) as error:
        DatasetCatalog.get("toy_sem_seg_train")
    assert "`freemask make-toy`" in str(error.value) and "`python tools/make_toy_dataset.py`" in str(error.value)


def _strings_outside_docstrings(path: str):
    tree = ast.parse(open(path, encoding="utf-8").read())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.lineno, node.value


def test_no_message_names_a_script_of_the_checkout_alone():
    """Outside freemask/commands (the table, the launchers' own words), a script is named only through hint()."""
    preparations = glob.glob(os.path.join(REPO, "datasets", "prepare_*.py"))
    scripts = [os.path.basename(p) for p in [c.script for c in COMMANDS.values()] + preparations]
    assert "prepare_ade20k_sem_seg.py" in scripts and "filter_syn.py" in scripts
    found = []
    for path in glob.glob(os.path.join(REPO, "freemask", "**", "*.py"), recursive=True):
        if os.path.join("freemask", "commands") in path:
            continue
        for line, text in _strings_outside_docstrings(path):
            if "tools/" in text or "datasets/prepare_" in text or any(script in text for script in scripts):
                found.append(f"{os.path.relpath(path, REPO)}:{line}: {text[:80]}")
    assert found == []


def test_the_resume_hint_repeats_the_command_that_started_the_run():
    assert resume_command(["freemask train", "--config-file", "a b.yaml", "SEED", "1"]) == (
        "freemask train --resume --config-file 'a b.yaml' SEED 1"
    )
    command = resume_command(["python -m freemask train", "--eval-only"])
    assert command == "python -m freemask train --resume --eval-only"


def test_the_pipeline_runs_its_steps_through_the_package(tmp_path, monkeypatch):
    options = pipeline.PipelineOptions(
        working_dir=REPO, output_root=str(tmp_path / "out"), datasets_root=str(tmp_path / "d")
    )
    steps = pipeline.plan_steps(options)
    assert {step.argv[0] for step in steps} == {"make-toy", "train", "filter", "resample"}
    assert pipeline.shown_command(steps[0].argv, REPO) == f"freemask make-toy --root {tmp_path / 'd'}"
    started = []

    def recorded(argv, **kwargs):
        started.append((list(argv), kwargs["cwd"]))
        return run_script(["-m", "freemask", "--version"], **kwargs)  # a real fork running the package

    monkeypatch.setattr(pipeline, "run_script", recorded)
    os.makedirs(options.step_dir("steps"))
    for output in steps[0].outputs:  # what the real make-toy would have written
        os.makedirs(os.path.dirname(output), exist_ok=True)
        open(output, "w").close()
    assert pipeline._execute(options, steps[0], "first", lambda line: None) >= 0
    assert started == [(["-m", "freemask", *steps[0].argv], REPO)]
    assert f"freemask {commands.version()}" in (tmp_path / "out" / "steps" / "data.log").read_text()
