"""The shared command-line runner: early checks, one line per user error, no torch for --help."""

import errno
import glob
import os
import subprocess
import sys

import pytest

from freemask import cli
from freemask.arguments import resume_command
from freemask.config import ConfigError
from freemask.data.catalog import DatasetNotRegisteredError
from freemask.errors import OutputWriteError, TrainingInterrupted
from freemask.model_zoo import closest_config
from freemask.utils.atomic import atomic_write_text

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
    typo = "configs/toy/semantic-segmentation/semantic_fpn_R18.yaml"
    code = cli.run(called.append, "main", checks=[lambda: cli.check_config_path(typo)])
    assert code == 1 and called == []
    assert "did you mean configs/toy/semantic-segmentation/semantic_fpn_R18_toy.yaml?" in capsys.readouterr().err


def test_interruption_is_its_own_line_with_exit_code_130(capsys):
    def interrupted():
        raise TrainingInterrupted("interrupted after iteration 2; checkpoint saved to o/model_0000002.pth; resume ...")

    assert cli.run(interrupted) == 130
    assert capsys.readouterr().err.startswith("interrupted after iteration 2;")


def test_ctrl_c_in_any_command_is_one_line_with_exit_code_130(capsys):
    def pressed_ctrl_c():
        raise KeyboardInterrupt

    assert cli.run(pressed_ctrl_c) == 130
    err = capsys.readouterr().err
    assert err.startswith("interrupted (Ctrl-C); ") and err.count("\n") == 1 and "run the same command again" in err


def test_main_returning_an_exit_code_keeps_it():
    assert cli.run(lambda: 3) == 3 and cli.run(lambda: None) == 0


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EROFS], ids=errno.errorcode.get)
def test_a_file_system_refusing_a_write_is_one_line_naming_the_file(capsys, code):
    def full_disk():
        raise OSError(code, os.strerror(code), "/out/run/metrics.json")

    assert cli.run(full_disk) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot write /out/run/metrics.json: {os.strerror(code)} ({errno.errorcode[code]});")
    assert err.count("\n") == 1 and "/out/run" in err
    with pytest.raises(PermissionError):  # another OS error is not the file system's state: a bug, traceback kept
        cli.run(lambda: (_ for _ in ()).throw(PermissionError(errno.EACCES, "denied")))


def test_an_atomic_write_on_a_full_disk_names_the_file_and_keeps_the_earlier_version(tmp_path, monkeypatch, capsys):
    """/dev/full answers every write with ENOSPC, as a full file system does: the write's temporary goes there."""
    target = tmp_path / "filter_stats.json"
    target.write_text("earlier")
    real_open = open
    to_dev_full = lambda path, *a, **k: real_open("/dev/full", *a, **k)  # noqa: E731
    monkeypatch.setattr("freemask.utils.atomic.open", to_dev_full, raising=False)
    assert cli.run(atomic_write_text, str(target), "new " * 10000) == 1
    err = capsys.readouterr().err
    assert err == (
        f"error: cannot write {target}: No space left on device (ENOSPC); filter_stats.json was not written (an "
        f"earlier filter_stats.json is intact); free space in {tmp_path} (or choose another output folder), then run "
        "the same command again\n"
    )
    assert target.read_text() == "earlier" and os.listdir(tmp_path) == ["filter_stats.json"]
    with pytest.raises(OutputWriteError) as caught:
        atomic_write_text(str(target), "new")
    # Not an OSError, which per-file loops collect to go on with the next file: every next one would fail too.
    assert not isinstance(caught.value, OSError) and caught.value.errno == errno.ENOSPC


def test_resume_command_puts_resume_before_the_overrides():
    command = resume_command(["train_net.py", "--config-file", "a b.yaml", "SOLVER.MAX_ITER", "6"])
    assert command == "python train_net.py --resume --config-file 'a b.yaml' SOLVER.MAX_ITER 6"
    assert resume_command(["t.py", "--resume"]) == "python t.py --resume"


def test_closest_config_by_path_and_by_file_name(monkeypatch):
    monkeypatch.chdir(REPO)
    toy = "configs/toy/semantic-segmentation/semantic_fpn_R18_toy.yaml"
    assert closest_config("configs/toy/semantic-segmentation/semantic_fpn_R18_toy.yml") == toy
    assert closest_config("elsewhere/semantic_fpn_R18_toy.yaml") == toy
    assert closest_config("zzz") == ""


def test_unregistered_dataset_with_a_did_you_mean():
    with pytest.raises(DatasetNotRegisteredError, match=r"DATASETS: dataset 'toy_sem_seg_trian' .*toy_sem_seg_train"):
        cli.check_datasets(["toy_sem_seg_trian"])


SCRIPTS = sorted(
    os.path.relpath(p, REPO)
    for pattern in ("train_net.py", "tools/*.py", "datasets/prepare_*.py")
    for p in glob.glob(os.path.join(REPO, pattern))
)


def test_every_user_script_is_listed():
    assert len(SCRIPTS) >= 20 and {"tools/convert_checkpoint.py", "datasets/prepare_ade20k_sem_seg.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_does_not_import_torch(script):
    # A new interpreter per script (start-up is what is tested). Made impossible: a module set to None in sys.modules
    # raises ImportError on import.
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
        "sys.argv = [sys.argv[1], '--config-file', 'configs/toy/semantic-segmentation/semantic_fpn_R18_toyy.yaml']\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, os.path.join(REPO, "train_net.py")], capture_output=True, text=True, cwd=REPO
    )
    assert proc.returncode == 1 and proc.stderr == (
        "error: --config-file configs/toy/semantic-segmentation/semantic_fpn_R18_toyy.yaml: config file not found; "
        "did you mean configs/toy/semantic-segmentation/semantic_fpn_R18_toy.yaml?\n"
    )


def test_missing_dataset_is_reported_without_loading_the_model_zoo(tmp_path):
    # timm made impossible: the early checks must not need the model zoo that imports it.
    code = (
        "import runpy, sys; sys.modules['timm'] = None\n"
        "config = 'configs/toy/semantic-segmentation/semantic_fpn_R18_toy.yaml'\n"
        "sys.argv = [sys.argv[1], '--config-file', config, 'OUTPUT_DIR', sys.argv[2]]\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    env = {**os.environ, "DETECTRON2_DATASETS": str(tmp_path / "none")}
    command = [sys.executable, "-c", code, os.path.join(REPO, "train_net.py"), str(tmp_path / "out")]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env)
    assert proc.returncode == 1 and proc.stderr.startswith("error: toy dataset not found: "), proc.stderr[-2000:]
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "out").exists()


def test_ctrl_c_in_a_single_process_worker_reaches_the_runner(capsys):
    """launch() with one process calls in_worker directly: its Ctrl-C must still print the runner's line."""

    def pressed_ctrl_c():
        raise KeyboardInterrupt

    assert cli.run(cli.in_worker, pressed_ctrl_c) == 130
    assert capsys.readouterr().err.startswith("interrupted (Ctrl-C); ")
