"""tools/resample_syn.py on the toy dataset: the manifest the resampled split reads, reproducibility, bad inputs."""

import importlib.util
import math
import os
import pathlib
import shutil

import pytest
from script_runner import run_script

from freemask.data.catalog import DatasetCatalog
from freemask.data.datasets.synthetic import load_resampled, read_manifest
from freemask.data.datasets.toy import TOY_CLASSES
from freemask.synthetic.class_loss import ClassLoss, write_class_loss
from freemask.synthetic.resample.hardness import mask_hardness
from freemask.synthetic.resample.plan import copies_for_rank

REPO = pathlib.Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "resample_syn.py"
MEANS = [0.2, 0.1, 0.5, 0.8, 2.0, None]  # "person" has no mean loss


def _tool():
    spec = importlib.util.spec_from_file_location("resample_syn_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def toy(toy_datasets, tmp_path, monkeypatch):
    """A private copy of the session toy dataset plus a class_loss.json; returns (toy root, class-loss path)."""
    root = tmp_path / "datasets"
    shutil.copytree(toy_datasets, root)
    monkeypatch.setenv("DETECTRON2_DATASETS", str(root))
    class_loss = tmp_path / "class_loss.json"
    write_class_loss(str(class_loss), ClassLoss("toy_sem_seg_train", 255, TOY_CLASSES, [100] * 6, MEANS))
    return root / "toy", str(class_loss)


def _registered(class_loss, *extra):
    return [
        "--real-dataset",
        "toy_sem_seg_train",
        "--syn-dataset",
        "toy_syn_sem_seg_train",
        "--class-loss",
        class_loss,
        "--no-progress",
        *extra,
    ]


def _folders(toy_root, class_loss, real=None, *extra):
    return [
        "--real-mask-path",
        str(real or toy_root / "ADEChallengeData2016" / "annotations" / "training"),
        "--syn-img-path",
        str(toy_root / "ADE20K_Synthetic" / "images"),
        "--syn-mask-path",
        str(toy_root / "ADE20K_Synthetic" / "annotations"),
        "--class-loss",
        class_loss,
        "--no-progress",
        *extra,
    ]


def test_cli_manifest_is_the_resampled_split(toy):
    toy_root, class_loss = toy
    proc = run_script(
        [TOOL, *_registered(class_loss, "--max-copies", "2")],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    manifest = toy_root / "ADE20K_Synthetic" / "resampled_manifest.txt"
    records = DatasetCatalog.get("toy_syn_resampled_sem_seg_train")
    assert [(r["file_name"], r["sem_seg_file_name"]) for r in records] == read_manifest(
        str(manifest), str(manifest.parent)
    )
    assert f"total: {len(records)} pairs written to {manifest}" in proc.stdout
    assert "copies per real mask (copies: masks): 1: 2, 2: 6" in proc.stdout  # ranks 1, 2 of 8: round(0.5) = 0
    # each real mask got the copies of its hardness rank
    masks = sorted((toy_root / "ADEChallengeData2016" / "annotations" / "training").glob("*.png"))
    means = [math.nan if m is None else m for m in MEANS]
    hardness = {p.stem: mask_hardness(str(p), means, 255, True) for p in masks}
    order = sorted(hardness, key=lambda s: (hardness[s], s))
    copies = {s: sum(r["real_stem"] == s for r in records) for s in hardness}
    assert copies == {s: copies_for_rank(order.index(s) + 1, len(order), 2) for s in hardness}


def test_same_seed_same_manifest_and_folders_equal_datasets(toy, tmp_path):
    toy_root, class_loss = toy
    tool = _tool()
    outputs = []
    for seed in ["0", "0", "1", "2", "3"]:
        outputs.append(tmp_path / f"m{len(outputs)}.txt")
        assert tool.main(_registered(class_loss, "--max-copies", "2", "--seed", seed)) == 0
        shutil.copy(toy_root / "ADE20K_Synthetic" / "resampled_manifest.txt", outputs[-1])
    texts = [p.read_bytes() for p in outputs]
    assert texts[0] == texts[1]
    assert len(set(texts)) > 1  # two masks choose 1 of 2 seeds: the seed matters
    folder_manifest = toy_root / "ADE20K_Synthetic" / "from_folders.txt"
    args = _folders(toy_root, class_loss, None, "--reduce-zero-label", "--max-copies", "2", "--workers", "1")
    assert tool.main([*args, "--output", str(folder_manifest)]) == 0
    assert folder_manifest.read_bytes() == texts[0]


def test_copy_folder_is_a_synthetic_root(toy, tmp_path, capsys):
    toy_root, class_loss = toy
    target = tmp_path / "copied"
    assert _tool().main(_registered(class_loss, "--copy", str(target))) == 0
    records = load_resampled(str(target), reduce_zero_label=True)
    assert len(records) == 16  # every k >= 3 (rank 1 of 8: 1 + round(2.5)), all 2 seeds taken
    assert all(os.path.isfile(r["file_name"]) and not os.path.islink(r["file_name"]) for r in records)
    assert "32 files written, 0 already there" in capsys.readouterr().out
    assert not (toy_root / "ADE20K_Synthetic" / "resampled_manifest.txt").exists()  # the manifest went to the copy
    assert _tool().main(_registered(class_loss, "--copy", str(target))) == 0
    out = capsys.readouterr().out
    assert "0 files written, 32 already there" in out
    assert "missing seeds: 8 real masks have fewer seeds than their copies" in out  # k >= 3 > 2 seeds


def test_synthetic_files_without_real_mask(toy, tmp_path, capsys):
    toy_root, class_loss = toy
    real = tmp_path / "real"
    shutil.copytree(toy_root / "ADEChallengeData2016" / "annotations" / "training", real)
    (real / "toy_train_00003.png").unlink()
    tool = _tool()
    args = _folders(toy_root, class_loss, real, "--reduce-zero-label")
    assert tool.main(args) == 1
    err = capsys.readouterr().err
    assert "2 synthetic pairs of 1 real stems (toy_train_00003)" in err and "--allow-orphans" in err
    assert tool.main([*args, "--allow-orphans"]) == 0
    assert "left out: 2 synthetic pairs" in capsys.readouterr().out
    manifest = toy_root / "ADE20K_Synthetic" / "resampled_manifest.txt"
    assert "toy_train_00003" not in manifest.read_text()


def test_bad_inputs_give_one_clear_error(toy, tmp_path, capsys):
    toy_root, class_loss = toy
    tool = _tool()

    def error(args) -> str:
        assert tool.main(args) == 1
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ")
        return lines[0]

    assert "class-loss file not found" in error(_registered(str(tmp_path / "absent.json")))
    five = tmp_path / "five.json"
    write_class_loss(str(five), ClassLoss("other", 255, TOY_CLASSES[:5], [1] * 5, MEANS[:5]))
    assert "has 5 classes but the model/dataset has 6" in error(_registered(str(five)))
    assert "--reduce-zero-label" in error(_folders(toy_root, class_loss))  # raw masks read as prepared
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no '*.png' masks in" in error(_folders(toy_root, class_loss, empty))
    syn_empty = [*_registered(class_loss)[:2], "--syn-img-path", str(empty), "--syn-mask-path", str(empty)]
    assert "no synthetic images named" in error([*syn_empty, "--class-loss", class_loss])
    assert "'nope' is not registered" in error(["--real-dataset", "nope", *_registered(class_loss)[2:]])
    outside = error(_registered(class_loss, "--output", str(tmp_path / "elsewhere" / "m.txt")))
    assert "does not contain" in outside and "put it in a folder that holds the files" in outside
    assert not list((toy_root / "ADE20K_Synthetic").glob("*.txt"))  # nothing written on error
    with pytest.raises(SystemExit):
        tool.main([*_registered(class_loss), "--syn-img-path", str(empty)])
    with pytest.raises(SystemExit):
        tool.main(_registered(class_loss, "--reduce-zero-label"))


def test_unwritable_output_folders_are_one_line_before_the_hardness_pass(toy, tmp_path, capsys, monkeypatch):
    toy_root, class_loss = toy
    tool = _tool()
    (tmp_path / "a_file").write_text("")
    target = tmp_path / "a_file" / "copy"
    assert tool.main(_registered(class_loss, "--copy", str(target))) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --copy {target}: ") and "is a file" in lines[0]

    # The default manifest folder (the synthetic root) read-only, as os.access reports it to a non-root user.
    synthetic_root = os.path.realpath(toy_root / "ADE20K_Synthetic")
    real_access = os.access
    monkeypatch.setattr("os.access", lambda p, m: os.path.realpath(p) != synthetic_root and real_access(p, m))
    hardness = []
    monkeypatch.setattr("freemask.synthetic.resample.run.compute_hardness", lambda *a: hardness.append(1))
    assert tool.main(_registered(class_loss)) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the manifest folder (see --output) ")
    assert f"{synthetic_root} is not writable" in lines[0]
    assert not hardness
