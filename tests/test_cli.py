"""The shared command-line runner: early checks, one line per user error, no torch for --help."""

import os
import subprocess
import sys

import pytest

from freemask import cli
from freemask.config import ConfigError
from freemask.data.catalog import DatasetNotRegisteredError
from freemask.errors import TrainingInterrupted

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_run_turns_a_user_error_into_one_line_and_keeps_a_bug_traceback(capsys):
    def bad_config():
        raise ConfigError("x.yaml: unknown config key A; did you mean B?")

    assert cli.run(bad_config) == 1
    assert capsys.readouterr().err == "error: x.yaml: unknown config key A; did you mean B?\n"
    with pytest.raises(ZeroDivisionError):
        cli.run(lambda: 1 / 0)


def test_checks_run_before_main(capsys):
    called = []
    code = cli.run(called.append, "main", checks=[lambda: cli.check_config_path("configs/toy/semantic_fpn_R18.yaml")])
    assert code == 1 and called == []
    assert "did you mean configs/toy/semantic_fpn_R18_toy.yaml?" in capsys.readouterr().err


def test_interruption_is_its_own_line_with_exit_code_130(capsys):
    def interrupted():
        raise TrainingInterrupted("interrupted at iteration 3; checkpoint saved to o/model_0000002.pth; resume ...")

    assert cli.run(interrupted) == 130
    assert capsys.readouterr().err.startswith("interrupted at iteration 3;")


def test_resume_command_puts_resume_before_the_overrides():
    command = cli.resume_command(["train_net.py", "--config-file", "a b.yaml", "SOLVER.MAX_ITER", "6"])
    assert command == "python train_net.py --resume --config-file 'a b.yaml' SOLVER.MAX_ITER 6"
    assert cli.resume_command(["t.py", "--resume"]) == "python t.py --resume"


def test_closest_config_by_path_and_by_file_name(monkeypatch):
    monkeypatch.chdir(REPO)
    assert cli.closest_config("configs/toy/semantic_fpn_R18_toy.yml") == "configs/toy/semantic_fpn_R18_toy.yaml"
    assert cli.closest_config("elsewhere/semantic_fpn_R18_toy.yaml") == "configs/toy/semantic_fpn_R18_toy.yaml"
    assert cli.closest_config("zzz") == ""


def test_unregistered_dataset_with_a_did_you_mean():
    with pytest.raises(DatasetNotRegisteredError, match=r"DATASETS: dataset 'toy_sem_seg_trian' .*toy_sem_seg_train"):
        cli.check_datasets(["toy_sem_seg_trian"])


@pytest.mark.parametrize("script", ["train_net.py", "tools/filter_syn.py", "tools/resample_syn.py"])
def test_help_does_not_import_torch(script):
    # Made impossible: a module set to None in sys.modules raises ImportError on import.
    code = (
        "import runpy, sys; sys.modules['torch'] = None; sys.argv = [sys.argv[1], '--help']\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, os.path.join(REPO, script)], capture_output=True, text=True, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage:" in proc.stdout


def test_mistyped_config_path_is_reported_before_torch_is_imported():
    code = (
        "import runpy, sys; sys.modules['torch'] = None\n"
        "sys.argv = [sys.argv[1], '--config-file', 'configs/toy/semantic_fpn_R18_toyy.yaml']\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, os.path.join(REPO, "train_net.py")], capture_output=True, text=True, cwd=REPO
    )
    assert proc.returncode == 1 and proc.stderr == (
        "error: --config-file configs/toy/semantic_fpn_R18_toyy.yaml: config file not found; "
        "did you mean configs/toy/semantic_fpn_R18_toy.yaml?\n"
    )


def test_missing_dataset_is_reported_without_loading_the_model_zoo(tmp_path):
    # timm made impossible: the early checks must not need the model zoo that imports it.
    code = (
        "import runpy, sys; sys.modules['timm'] = None\n"
        "config = 'configs/toy/semantic_fpn_R18_toy.yaml'\n"
        "sys.argv = [sys.argv[1], '--config-file', config, 'OUTPUT_DIR', sys.argv[2]]\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    env = {**os.environ, "DETECTRON2_DATASETS": str(tmp_path / "none")}
    command = [sys.executable, "-c", code, os.path.join(REPO, "train_net.py"), str(tmp_path / "out")]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env)
    assert proc.returncode == 1 and proc.stderr.startswith("error: toy dataset not found: "), proc.stderr[-2000:]
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "out").exists()
