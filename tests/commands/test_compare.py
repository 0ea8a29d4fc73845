"""tools/compare_runs.py on two toy runs (issue 28, item 4): the per-class gains of B over A, read from two results
files the trainer's own evaluation wrote, equal the difference computed here from those files, in the listed order.

The two "runs" are the toy config's evaluation (``Trainer.test``, the code a training's evaluation runs) of two
stand-in models that confuse known classes: a real ``OUTPUT_DIR/inference/sem_seg_results.json`` each, in seconds,
without training a model whose confusions nobody chose.
"""

import csv
import io
import json
import pathlib
import shutil
import sys

import cv2
import pytest
import torch
from torch import nn

from freemask.commands import compare as compare_command
from freemask.data.datasets.toy import TOY_CLASSES
from freemask.engine.defaults import setup_cfg
from freemask.engine.trainer import Trainer
from freemask.evaluation.results_json import Provenance

REPO = pathlib.Path(__file__).resolve().parents[2]
TOY_CONFIG = REPO / "configs" / "toy" / "semantic-segmentation" / "semantic_fpn_R18_toy.yaml"
TEST_SET = "toy_sem_seg_val"
# Which classes each stand-in model mistakes for which: A loses car and person, B loses grass and half the road.
CONFUSIONS = {
    "real_only": {"car": "road", "person": "building"},
    "joint": {"grass": "sky"},
}


def _tool():
    return compare_command


class ConfusingModel(nn.Module):
    """Predicts the ground truth of each image with the classes of ``confusions`` replaced (and, with
    ``road_to_car``, the left half of the road called car): a model of known mistakes, run as the trainer runs one."""

    def __init__(self, confusions, road_to_car=False):
        super().__init__()
        ids = {name: i for i, name in enumerate(TOY_CLASSES)}
        self.mapping = torch.arange(len(TOY_CLASSES))
        for truth, predicted in confusions.items():
            self.mapping[ids[truth]] = ids[predicted]
        self.road, self.car, self.road_to_car = ids["road"], ids["car"], road_to_car

    def forward(self, batched_inputs):
        outputs = []
        for inp in batched_inputs:
            gt = inp["sem_seg"].long()
            pred = self.mapping[gt.clamp(max=len(TOY_CLASSES) - 1)]
            if self.road_to_car:
                left = torch.zeros_like(gt, dtype=torch.bool)
                left[:, : gt.shape[1] // 2] = True
                pred[(gt == self.road) & left] = self.car
            scores = nn.functional.one_hot(pred, len(TOY_CLASSES)).permute(2, 0, 1).float()
            outputs.append({"sem_seg": scores})
        return outputs


def _evaluate(output_dir, model, datasets_root, iteration):
    overrides = ["MODEL.DEVICE", "cpu", "DATALOADER.NUM_WORKERS", "0", "INPUT.MIN_SIZE_TEST", "64"]
    cfg = setup_cfg(str(TOY_CONFIG), [*overrides, "DATASETS.TEST", f"('{TEST_SET}',)", "OUTPUT_DIR", str(output_dir)])
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DETECTRON2_DATASETS", datasets_root)
        Trainer.test(cfg, model, produced_by=Provenance(None, cfg, iteration))
    return output_dir / "inference" / "sem_seg_results.json"


@pytest.fixture(scope="module")
def runs(toy_datasets, tmp_path_factory):
    """Two evaluated toy runs, ``real_only`` (at iteration 99) and ``joint`` (at iteration 199)."""
    root = tmp_path_factory.mktemp("runs")
    real = _evaluate(root / "real_only", ConfusingModel(CONFUSIONS["real_only"]), toy_datasets, 99)
    joint = _evaluate(root / "joint", ConfusingModel(CONFUSIONS["joint"], road_to_car=True), toy_datasets, 199)
    return root / "real_only", root / "joint", real, joint


def _read(path):
    return json.loads(pathlib.Path(path).read_text())


def _hand_gains(a_file, b_file):
    """{class: IoU_B - IoU_A} over the classes with an IoU in both files, straight from the JSON."""
    a, b = _read(a_file), _read(b_file)
    return {
        name: b[f"IoU-{name}"] - a[f"IoU-{name}"]
        for name in TOY_CLASSES
        if a[f"IoU-{name}"] is not None and b[f"IoU-{name}"] is not None
    }


def _markdown_rows(text, title):
    """(rank, class, A, B, gain) rows of the Markdown table after the line mentioning ``title``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if title in line)
    rows = []
    for line in lines[start + 3 :]:
        if not line.startswith("|"):
            break
        if not line.startswith("|--"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows.append((int(cells[0]), cells[1], float(cells[2]), float(cells[3]), float(cells[4])))
    return rows


def test_gains_equal_the_difference_of_the_two_results_files_in_order(runs, capsys):
    real, joint, real_file, joint_file = runs
    gains = _hand_gains(real_file, joint_file)
    improved = sorted((g, n) for n, g in gains.items() if g > 0)[::-1]
    degraded = sorted((g, n) for n, g in gains.items() if g < 0)
    assert len(improved) >= 2 and len(degraded) >= 2  # the stand-in models make both kinds

    assert _tool().main([str(real), str(joint), "--top", "2"]) == 0
    out, err = capsys.readouterr()
    assert err.splitlines()[0].startswith(f"real_only: {real_file} (the evaluation at iteration 99; {TEST_SET}")
    rows = _markdown_rows(out, "most improved")
    assert [(r[0], r[1]) for r in rows] == [(1, improved[0][1]), (2, improved[1][1])]
    for _, name, a, b, gain in rows:
        assert gain == pytest.approx(gains[name], abs=0.006)
        assert (a, b) == pytest.approx((_read(real_file)[f"IoU-{name}"], _read(joint_file)[f"IoU-{name}"]), abs=0.006)
    assert [r[1] for r in _markdown_rows(out, "most degraded")] == [degraded[0][1], degraded[1][1]]
    overall = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith(("| mIoU", "| pACC"))}
    for key in ("mIoU", "pACC"):
        a, b = _read(real_file)[key], _read(joint_file)[key]
        assert overall[key] == f"| {key} | {a:.2f} | {b:.2f} | {b - a:+.2f} |"


def test_csv_lists_every_changed_class_with_the_hand_computed_gain(runs, tmp_path, capsys):
    real, joint, real_file, joint_file = runs
    gains = _hand_gains(real_file, joint_file)
    output = tmp_path / "tables" / "gains.csv"
    assert _tool().main([str(real_file), str(joint_file), "--output", str(output)]) == 0  # csv from the suffix
    printed = capsys.readouterr().out
    assert output.read_text() == printed
    rows = list(csv.DictReader(io.StringIO(printed)))
    assert list(rows[0]) == ["section", "rank", "class", "real_only", "joint", "gain"]
    listed = {r["class"]: float(r["gain"]) for r in rows if r["section"] in ("improved", "degraded")}
    assert listed == pytest.approx({n: g for n, g in gains.items() if g != 0}, abs=1e-4)
    improved = [r["class"] for r in rows if r["section"] == "improved"]
    assert improved == sorted(improved, key=lambda n: -gains[n]) and [r["rank"] for r in rows[2:3]] == ["1"]
    mious = next(r for r in rows if r["class"] == "mIoU")
    assert float(mious["joint"]) - float(mious["real_only"]) == pytest.approx(float(mious["gain"]), abs=1e-3)


def test_chart_names_the_listed_classes(runs, tmp_path, capsys, monkeypatch):
    from matplotlib.figure import Figure

    drawn = []
    save = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: (drawn.append(self), save(self, *a, **k))[1])
    real, joint, real_file, joint_file = runs
    gains = _hand_gains(real_file, joint_file)
    chart = tmp_path / "gains.png"
    assert _tool().main([str(real), str(joint), "--top", "1", "--chart", str(chart)]) == 0
    assert cv2.imread(str(chart)) is not None
    (ax,) = drawn[0].axes
    names = [t.get_text() for t in ax.get_yticklabels()]
    best, worst = max(gains, key=gains.get), min(gains, key=gains.get)
    assert names == [best, worst]
    bars = sorted(ax.patches, key=lambda p: -p.get_y())  # top to bottom
    assert [p.get_width() for p in bars] == pytest.approx([gains[best], gains[worst]])


def test_results_of_other_classes_or_another_test_set_are_refused_in_one_line(runs, tmp_path, capsys):
    real, joint, real_file, joint_file = runs
    fewer = _read(joint_file)
    del fewer["IoU-person"], fewer["dataset"], fewer["produced_by"]  # an older file, of a 5-class test set
    (tmp_path / "fewer.json").write_text(json.dumps(fewer))
    other = _read(joint_file)
    other["dataset"]["name"] = "toy_syn_sem_seg_train"
    (tmp_path / "other.json").write_text(json.dumps(other))
    tool = _tool()
    for path, message in ((tmp_path / "fewer.json", "score different class lists"), (tmp_path / "other.json", "")):
        capsys.readouterr()
        assert tool.main([str(real), str(path)]) == 1
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert "only in fewer: none" not in err[-1]
    assert f"{real_file} is an evaluation on {TEST_SET}, {tmp_path / 'other.json'} on toy_syn_sem_seg_train" in err[-1]


def test_an_older_results_file_compares_by_class_names(runs, tmp_path, capsys):
    real, joint, real_file, joint_file = runs
    older = _read(real_file)
    del older["dataset"], older["produced_by"]  # before the evaluator named its test set
    shutil.copytree(real, tmp_path / "older")
    (tmp_path / "older" / "inference" / "sem_seg_results.json").write_text(json.dumps(older))
    assert _tool().main([str(tmp_path / "older"), str(joint), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    gains = _hand_gains(real_file, joint_file)
    assert {r["class"]: float(r["gain"]) for r in rows if r["rank"]} == pytest.approx(
        {n: g for n, g in gains.items() if g != 0}, abs=1e-4
    )


def test_missing_empty_or_unevaluated_inputs_are_one_line_naming_the_file(runs, tmp_path, capsys):
    real, joint, _, _ = runs
    (tmp_path / "empty.json").write_text("")
    (tmp_path / "panoptic.json").write_text('{"PQ": 50.0}')
    (tmp_path / "not_evaluated").mkdir()
    tool = _tool()
    expected = {
        "missing": f"error: {tmp_path / 'missing'} does not exist; pass a training OUTPUT_DIR or its "
        "inference/sem_seg_results.json",
        "empty.json": f"error: {tmp_path / 'empty.json'} is empty; evaluate the run again",
        "panoptic.json": f"error: {tmp_path / 'panoptic.json'} has no per-class IoU",
        "not_evaluated": f"error: {tmp_path / 'not_evaluated'}: no inference/sem_seg_results.json (the run was never "
        "evaluated); evaluate it: `freemask train --config-file",
    }
    for name, start in expected.items():
        assert tool.main([str(real), str(tmp_path / name)]) == 1
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and err[0].startswith(start), err


def test_a_chart_without_matplotlib_is_one_line_before_any_output(runs, tmp_path, capsys, monkeypatch):
    real, joint, _, _ = runs
    for module in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, module, None)
    tool = _tool()
    table, chart = tmp_path / "gains.md", tmp_path / "gains.png"
    assert tool.main([str(real), str(joint), "--output", str(table), "--chart", str(chart)]) == 1
    out, err = capsys.readouterr()
    assert (
        out == ""
        and err == "error: matplotlib is not installed: pip install 'freemask[plot]' (or pip install matplotlib)\n"
    )
    assert not table.exists() and not chart.exists()
