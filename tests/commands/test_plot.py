"""tools/plot_metrics.py: loss, lr and mIoU curves of several runs on one figure (issue 18, point 16)."""

import json
import pathlib
import sys

import cv2
import pytest

from freemask.commands import plot as plot_command
from freemask.utils.events import JSONWriter, MetricStorage
from freemask.utils.plot_metrics import read_metrics


def _tool():
    return plot_command


def _run(folder: pathlib.Path, iterations, miou_every=2, offset=0.0) -> pathlib.Path:
    """A metrics.json as the trainer writes it (its own JSONWriter), mIoU at every ``miou_every`` iterations."""
    folder.mkdir(parents=True, exist_ok=True)
    writer, storage = JSONWriter(str(folder / "metrics.json")), MetricStorage()
    for i in iterations:
        storage.iter = i
        storage.put_scalars(total_loss=2.0 / (i + 1) + offset, lr=1e-3 * (1 - i / 10), time=0.1)
        if (i + 1) % miou_every == 0:
            storage.put_scalars(**{"sem_seg/mIoU": 50.0 + i + offset, "sem_seg/IoU-sky": 1.0})
        writer.write(storage)
        storage.clear()
    writer.close()
    return folder


def test_read_metrics_keeps_the_resumed_segment_and_skips_a_torn_last_line(tmp_path):
    run = _run(tmp_path / "r", range(6))
    _run(run, range(4, 8), offset=100.0)  # resumed from the checkpoint at iteration 3
    with open(run / "metrics.json", "a") as f:
        f.write('{"iteration": 8, "total_lo')
    series = read_metrics(str(run))
    assert [i for i, _ in series["total_loss"]] == list(range(8))
    assert series["total_loss"][3][1] == pytest.approx(0.5) and series["total_loss"][4][1] > 100
    assert series["sem_seg/mIoU"] == [(1, 51.0), (3, 53.0), (5, 155.0), (7, 157.0)]


def test_two_runs_on_one_png(tmp_path, capsys):
    real, joint = _run(tmp_path / "real_only", range(10)), _run(tmp_path / "joint", range(10), offset=1.0)
    out = tmp_path / "compare.png"
    assert _tool().main([str(real), str(joint), "--labels", "real", "joint", "--output", str(out)]) == 0
    image = cv2.imread(str(out))
    assert image is not None and image.shape[1] > 2 * image.shape[0]  # three panels side by side
    assert "wrote" in capsys.readouterr().out
    assert _tool().main([str(real)]) == 0 and (real / "metrics.png").is_file()  # one run: into its folder


def test_folder_without_metrics_or_without_matplotlib_is_one_line(tmp_path, capsys, monkeypatch):
    real = _run(tmp_path / "real_only", range(4))
    assert _tool().main([str(real), str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path / 'nothing'}: no metrics.json; pass a training OUTPUT_DIR (training "
                   f"writes it every LOG_PERIOD)"]  # fmt: skip
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    assert _tool().main([str(real)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "matplotlib is not installed" in err[0] and "freemask[plot]" in err[0]
    assert not (real / "metrics.png").exists()


def _drawn_figures(monkeypatch):
    """The matplotlib figures the tool saves (Agg), recorded as they are written, for their lines and ticks."""
    from matplotlib.figure import Figure

    drawn, save = [], Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: (drawn.append(self), save(self, *a, **k))[1])
    return drawn


def test_each_run_keeps_one_colour_on_every_panel(tmp_path, monkeypatch):
    from matplotlib.colors import to_hex

    # "early" was stopped before its first evaluation (no mIoU); "both" was evaluated single-scale and multi-scale.
    early = _run(tmp_path / "early", range(3), miou_every=100)
    both = _run(tmp_path / "both", range(6))
    with open(both / "metrics.json", "a") as f:
        f.write(json.dumps({"iteration": 6, "sem_seg_ms_flip/mIoU": 60.0}) + "\n")  # after its last step
    third = _run(tmp_path / "third", range(4), offset=2.0)
    drawn = _drawn_figures(monkeypatch)
    out = tmp_path / "compare.png"
    assert _tool().main([str(early), str(both), str(third), "--output", str(out)]) == 0
    colours = {}  # run -> colours of its lines on every panel
    for ax in drawn[0].axes:
        for line in ax.lines:
            colours.setdefault(line.get_label().split()[0], set()).add(to_hex(line.get_color()))
    assert set(colours) == {"early", "both", "third"}
    assert all(len(c) == 1 for c in colours.values()), colours
    assert len({next(iter(c)) for c in colours.values()}) == 3, colours  # the runs differ
    miou_panel = drawn[0].axes[2]
    assert sorted(line.get_label() for line in miou_panel.lines) == ["both sem_seg", "both sem_seg_ms_flip", "third"]


def test_a_run_evaluated_once_has_integer_iteration_ticks(tmp_path, monkeypatch):
    once = _run(tmp_path / "once", [0], miou_every=1)
    drawn = _drawn_figures(monkeypatch)
    assert _tool().main([str(once)]) == 0
    for ax in drawn[0].axes:
        low, high = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert ticks and all(float(t).is_integer() for t in ticks), (ax.get_title(), ticks)
