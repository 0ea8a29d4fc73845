"""Configs found by name wherever a config path is accepted: the shipped names from any directory, ``_BASE_`` inside
an installed package (a fake site-packages layout), the did-you-mean over the shipped names, and the wheel's files."""

import glob
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from freemask import cli, model_zoo
from freemask.config import ConfigError, get_cfg

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The toy main job's config, wherever the configs layout puts it (toy/semantic-segmentation/ since issue 27).
(TOY,) = [
    os.path.relpath(path, os.path.join(REPO, "configs")).replace(os.sep, "/")
    for path in glob.glob(os.path.join(REPO, "configs", "**", "semantic_fpn_R18_toy.yaml"), recursive=True)
]


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """An empty working directory outside the repository."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    monkeypatch.chdir(work)
    return work


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """A fake installed package: ``site-packages/freemask/model_zoo/configs`` holding a child whose ``_BASE_`` is a
    sibling folder's file, with decoys of that base where a resolution against the working directory (or a config
    name's folder under it) would find them. Names that exist nowhere in the repository."""
    shipped = tmp_path / "site-packages" / "freemask" / "model_zoo" / "configs"
    write(shipped / "fake" / "Base-Fake.yaml", "SOLVER:\n  BASE_LR: 0.125\n  MAX_ITER: 3\n")
    child = "_BASE_: ../Base-Fake.yaml\nSOLVER:\n  MAX_ITER: 7\n"
    write(shipped / "fake" / "semantic-segmentation" / "child.yaml", child)
    write(tmp_path / "Base-Fake.yaml", "SOLVER:\n  BASE_LR: 0.5\n")  # ../Base-Fake.yaml seen from work/
    write(tmp_path / "work" / "configs" / "fake" / "Base-Fake.yaml", "SOLVER:\n  BASE_LR: 0.5\n")
    monkeypatch.setattr(model_zoo, "_PACKAGED", str(shipped))
    return shipped


def test_shipped_name_resolves_from_an_empty_directory(elsewhere):
    path = model_zoo.get_config_file("configs/" + TOY)
    assert path == model_zoo.get_config_file(TOY) == os.path.join(REPO, "configs", *TOY.split("/"))
    assert model_zoo.configs_root() == os.path.join(REPO, "configs")  # a checkout: no copy inside the package
    assert TOY in model_zoo.shipped_configs()
    in_repo = glob.glob(os.path.join(REPO, "configs", "**", "*.yaml"), recursive=True)
    assert len(model_zoo.shipped_configs()) == len(in_repo)
    cli.check_config_path("configs/" + TOY)  # train_net.py's early check accepts the name
    by_name, by_path = get_cfg(), get_cfg()
    by_name.merge_from_file("configs/" + TOY)  # the _BASE_ chain of the shipped file resolves next to it
    by_path.merge_from_file(path)
    assert by_name == by_path and list(by_name.DATASETS.TRAIN) == ["toy_sem_seg_train"]  # Base-Toy.yaml's


def test_train_net_takes_a_shipped_name_from_an_empty_directory(elsewhere, tmp_path):
    """Past the config (the early check and setup_cfg both resolve the name) to the next check: the missing data."""
    code = (
        "import runpy, sys; sys.modules['timm'] = None\n"
        "sys.argv = [sys.argv[1], '--config-file', sys.argv[2], 'OUTPUT_DIR', sys.argv[3]]\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    env = {**os.environ, "DETECTRON2_DATASETS": str(tmp_path / "none")}
    command = [sys.executable, "-c", code, os.path.join(REPO, "train_net.py"), "configs/" + TOY, str(tmp_path / "o")]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=elsewhere, env=env)
    assert proc.returncode == 1 and proc.stderr.startswith("error: toy dataset not found: "), proc.stderr[-2000:]
    assert os.listdir(elsewhere) == []


def test_a_file_in_the_working_directory_wins_over_the_shipped_name(elsewhere):
    own = write(elsewhere / "configs" / TOY, "SOLVER:\n  MAX_ITER: 11\n")
    assert model_zoo.resolve_config_file("configs/" + TOY) == "configs/" + TOY
    cfg = get_cfg()
    cfg.merge_from_file("configs/" + TOY)
    assert cfg.SOLVER.MAX_ITER == 11 and cfg.DATASETS.TRAIN == get_cfg().DATASETS.TRAIN
    assert os.path.isfile(own)


def test_base_inside_the_installed_package_resolves_next_to_the_shipped_file(installed, elsewhere):
    assert model_zoo.configs_root() == str(installed)  # the package's copy comes before the checkout's configs/
    assert model_zoo.shipped_configs() == ["fake/Base-Fake.yaml", "fake/semantic-segmentation/child.yaml"]
    cfg = get_cfg()
    cfg.merge_from_file("configs/fake/semantic-segmentation/child.yaml")
    assert (cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER) == (0.125, 7)


def test_base_given_as_a_shipped_name_in_a_users_own_config(installed, elsewhere):
    mine = write(elsewhere / "mine" / "my.yaml", "_BASE_: configs/fake/Base-Fake.yaml\nSOLVER:\n  MAX_ITER: 9\n")
    cfg = get_cfg()
    cfg.merge_from_file(mine)  # not work/configs/fake/Base-Fake.yaml: a _BASE_ is never read against the cwd
    assert (cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER) == (0.125, 9)
    missing = write(elsewhere / "mine" / "bad.yaml", "_BASE_: configs/fake/Base-Faek.yaml\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: _BASE_ file .*Base-Faek.yaml not found"):
        get_cfg().merge_from_file(missing)


def test_did_you_mean_searches_the_shipped_names(installed, elsewhere):
    with pytest.raises(ConfigError) as error:
        cli.check_config_path("configs/fake/semantic-segmentation/chidl.yaml")
    assert str(error.value) == (
        "--config-file configs/fake/semantic-segmentation/chidl.yaml: config file not found; "
        "did you mean configs/fake/semantic-segmentation/child.yaml?"
    )
    with pytest.raises(ConfigError) as error:
        model_zoo.get_config_file("fake/Base-Fak.yaml")
    assert str(error.value) == "fake/Base-Fak.yaml: not a shipped config; did you mean configs/fake/Base-Fake.yaml?"


# Paths of the layout before configs/<dataset>/<task>/ (issue 27), whose closest name by characters alone is another
# file: the shorter semantic Crop-640 for SeMask's, a shared Mask2Former recipe for the toy one, ...
OLD_LAYOUT = {
    "configs/ade20k-150/semask/Crop-640.yaml": "configs/ade20k/semantic-segmentation/semask/Crop-640.yaml",
    "configs/ade20k-150/Crop-640.yaml": "configs/ade20k/semantic-segmentation/Crop-640.yaml",
    "configs/ade20k-150/Base-ADE20K-150.yaml": "configs/ade20k/semantic-segmentation/Base-ADE20K-150.yaml",
    "configs/ade20k-150/Joint-320k.yaml": "configs/ade20k/semantic-segmentation/Joint-320k.yaml",
    "configs/toy/mask2former_R18_toy.yaml": "configs/toy/semantic-segmentation/mask2former_R18_toy.yaml",
    "configs/coco-stuff-164k-171/Base-COCO-Stuff-164K-171.yaml": (
        "configs/coco-stuff-164k/semantic-segmentation/Base-COCO-Stuff-164K-171.yaml"
    ),
}


@pytest.mark.parametrize("old", sorted(OLD_LAYOUT))
def test_a_path_of_the_old_layout_is_answered_with_where_the_file_went(old, elsewhere):
    with pytest.raises(ConfigError) as error:
        cli.check_config_path(old)
    assert str(error.value) == f"--config-file {old}: config file not found; did you mean {OLD_LAYOUT[old]}?"


def test_did_you_mean_from_outside_the_repository_is_a_name_that_resolves(elsewhere):
    typo = "configs/" + TOY.replace(".yaml", "y.yaml")
    with pytest.raises(ConfigError) as error:
        cli.check_config_path(typo)
    assert str(error.value) == f"--config-file {typo}: config file not found; did you mean configs/{TOY}?"
    with pytest.raises(ConfigError, match=r"^zzz.yaml: config file not found; check the path"):
        get_cfg().merge_from_file("zzz.yaml")


def test_a_path_leaving_configs_or_absolute_is_no_shipped_name(elsewhere):
    assert model_zoo.shipped_config_path("../configs/" + TOY) == ""
    assert model_zoo.shipped_config_path("/" + TOY) == ""
    with pytest.raises(ConfigError, match="not a shipped config"):
        model_zoo.get_config_file("../README.md")


def test_the_wheel_ships_every_config(tmp_path):
    """The wheel built from a copy of the project (the build writes build/ and *.egg-info next to its sources)."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        if os.path.isfile(os.path.join(REPO, name)):
            shutil.copy(os.path.join(REPO, name), source / name)
    for folder in ("freemask", "configs"):
        shutil.copytree(os.path.join(REPO, folder), source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    command = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(source)]
    subprocess.run(command + ["-w", str(tmp_path / "dist")], check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = glob.glob(str(tmp_path / "dist" / "freemask-*.whl"))
    prefix = "freemask/model_zoo/configs/"
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = sorted(n[len(prefix) :] for n in archive.namelist() if n.startswith(prefix))
    in_repo = glob.glob(os.path.join(REPO, "configs", "**", "*.yaml"), recursive=True)
    assert in_wheel == sorted(os.path.relpath(p, os.path.join(REPO, "configs")) for p in in_repo)
    assert TOY in in_wheel


def test_the_toy_pipeline_reads_the_shipped_configs_not_its_folder(elsewhere, tmp_path):
    """An installed package's pipeline runs from site-packages, where no configs/ folder is: the schedule (read from
    each training's config when scaled) comes from the shipped configs."""
    from freemask.toy import pipeline

    folder = str(tmp_path / "site-packages")
    options = pipeline.PipelineOptions(folder, str(tmp_path / "out"), str(tmp_path / "d"), iters_scale=0.5)
    (real,) = [step for step in pipeline.plan_steps(options) if step.name == "real"]
    cfg = get_cfg()
    cfg.merge_from_file("configs/" + TOY)
    assert real.argv[real.argv.index("SOLVER.MAX_ITER") + 1] == str(cfg.SOLVER.MAX_ITER // 2)
