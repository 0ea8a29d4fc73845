"""``freemask prepare <dataset>``: the dataset table against the launchers in datasets/, each dataset's --help without
torch and equal to its launcher's, the dataset list without importing any preparation, an unknown dataset, and the
messages that name a preparation in both forms."""

import ast
import glob
import os

import cv2
import numpy as np
import pytest
from test_commands import BLOCK_TORCH, REPO, _python, _words  # the same interpreter runs and help comparison

from freemask import commands
from freemask.commands import hint
from freemask.commands import prepare as prepare_command
from freemask.commands.prepare import DATASETS, launcher
from freemask.data.catalog import DatasetCatalog
from freemask.data.errors import DatasetError


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_help_of_every_dataset_needs_no_torch_and_is_its_launchers(name):
    as_command = _python(
        BLOCK_TORCH + "runpy.run_module('freemask', run_name='__main__', alter_sys=True)",  # as python -m freemask
        "prepare",
        name,
        "--help",
    )
    assert as_command.returncode == 0, as_command.stderr[-2000:]
    program = f"python -m freemask prepare {name}"
    assert as_command.stdout.startswith(f"usage: {program} ")
    code = BLOCK_TORCH + "sys.argv[:] = sys.argv[1:]\nrunpy.run_path(sys.argv[0], run_name='__main__')"
    as_script = _python(code, launcher(name), "--help")
    assert as_script.returncode == 0, as_script.stderr[-2000:]
    assert _words(as_command.stdout, program) == _words(as_script.stdout, os.path.basename(launcher(name)))
    assert "--root ROOT" in as_command.stdout and f"`freemask prepare {name} ARGS`" in as_command.stdout


def test_the_table_is_the_launchers_in_datasets_and_each_launcher_runs_its_module():
    launchers = {os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "datasets", "prepare_*.py"))}
    assert {launcher(name) for name in DATASETS} == launchers and len(launchers) == 11
    for name, preparation in DATASETS.items():
        assert name == preparation.module.replace("_", "-")
        with open(os.path.join(REPO, launcher(name)), encoding="utf-8") as f:
            imported = [n.module for n in ast.walk(ast.parse(f.read())) if isinstance(n, ast.ImportFrom)]
        assert imported == [f"freemask.commands.prepare.{preparation.module}"], launcher(name)
    package = os.path.join(REPO, "freemask", "commands", "prepare")
    modules = {os.path.basename(p)[:-3] for p in glob.glob(os.path.join(package, "*.py"))}
    assert modules - {"__init__"} == {p.module for p in DATASETS.values()}


def test_help_lists_the_datasets_without_importing_any_preparation(tmp_path):
    code = (
        BLOCK_TORCH + "from freemask.commands import main\ncode = main(['prepare', '--help'])\n"
        "print(sorted(m for m in sys.modules if m.startswith(('freemask.commands.prepare.', 'freemask.data'))))\n"
        "sys.exit(code)"
    )
    proc = _python(code, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: freemask prepare <dataset> [arguments]")
    width = max(map(len, DATASETS))
    for name, preparation in DATASETS.items():
        assert f"\n  {name:<{width}}  {preparation.summary}\n" in proc.stdout
    assert proc.stdout.rstrip().endswith("[]")  # neither a preparation module nor freemask.data was imported


def test_an_unknown_dataset_is_one_line_with_a_did_you_mean(capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["pytest"])
    assert commands.main(["prepare", "ade20k-sem", "--root", "x"]) == 2
    assert capsys.readouterr().err == "error: unknown dataset 'ade20k-sem'; did you mean ade20k-sem-seg?\n"
    assert prepare_command.main(["ade20k"]) == 2  # a prefix names every dataset it starts
    assert capsys.readouterr().err == (
        "error: unknown dataset 'ade20k'; did you mean ade20k-sem-seg or ade20k-panoptic or ade20k-open-vocab?\n"
    )
    assert prepare_command.main(["zzz"]) == 2
    assert capsys.readouterr().err == "error: unknown dataset 'zzz'; `freemask prepare --help` lists the datasets\n"
    assert prepare_command.main([]) == 2 and capsys.readouterr().err.startswith("usage: freemask prepare <dataset>")


def test_a_dataset_runs_through_the_command(tmp_path, capsys, monkeypatch):
    """`freemask prepare cityscapes-sem-seg` on a folder without Cityscapes: the preparation's own one-line error."""
    monkeypatch.setattr("sys.argv", ["pytest"])
    assert commands.main(["prepare", "cityscapes-sem-seg", "--root", str(tmp_path), "--workers", "0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "cityscapes" in err


def test_a_preparation_hint_names_the_installed_command_and_the_launcher():
    assert hint("prepare", "ade20k-sem-seg") == (
        "`freemask prepare ade20k-sem-seg` (in a checkout: `python datasets/prepare_ade20k_sem_seg.py`)"
    )
    assert hint("prepare", "coco-stuff-164k-sem-seg --force") == (
        "`freemask prepare coco-stuff-164k-sem-seg --force` "
        "(in a checkout: `python datasets/prepare_coco_stuff_164k_sem_seg.py --force`)"
    )
    with pytest.raises(KeyError):
        hint("prepare", "ade20k")


def test_the_missing_synthetic_twin_error_names_both_forms(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    root = tmp_path / "toy" / "ADE20K_Synthetic"
    for sub in ("images", "annotations"):
        (root / sub).mkdir(parents=True)
    cv2.imwrite(str(root / "images" / "a_seed_0.jpg"), np.zeros((2, 4, 3), np.uint8))
    cv2.imwrite(str(root / "annotations" / "a_seed_0.png"), np.zeros((2, 4), np.uint8))
    with pytest.raises(DatasetError) as error:
        DatasetCatalog.get("toy_syn_sem_seg_train_base")
    message = str(error.value)
    assert "`freemask prepare synthetic-open-vocab`" in message
    assert "`python datasets/prepare_synthetic_open_vocab.py`" in message
