"""The filter at FreeMask's scale (400k-710k pairs): saved image sizes, bounded in-flight work, a streamed end of run,
on a small random set whose expected results are computed here from the files."""

import concurrent.futures
import json
import os
import threading
import time

import cv2
import numpy as np
import PIL.Image
import pytest
import torch

from freemask.modeling.inference import SegmentationInference
from freemask.modeling.meta_arch.base import SemanticSegmentor
from freemask.synthetic.filter import batches as batches_module
from freemask.synthetic.filter import run as run_module
from freemask.synthetic.filter.batches import image_sizes
from freemask.synthetic.filter.options import FilterOptions
from freemask.synthetic.filter.outputs import log_records
from freemask.synthetic.filter.run import SyntheticFilter
from freemask.synthetic.filter.saved_sizes import SIZES_NAME, read_sizes, write_sizes
from freemask.synthetic.filter.stats import StatsTotals
from freemask.synthetic.filter.windowed import windowed_map
from freemask.synthetic.sources import SourceSpec

IGNORE = 255
K = 4
NAMES = ["a", "b", "c", "d"]
SIZES = [(20, 30), (20, 30), (17, 23), (31, 12), (20, 29), (20, 30), (17, 23), (25, 25)]


class PixelwiseModel(SemanticSegmentor):
    """A fixed random 1x1-conv classifier (padding cannot change a pixel's scores)."""

    def __init__(self) -> None:
        super().__init__(
            pixel_mean=[120.0, 110.0, 100.0], pixel_std=[60.0, 55.0, 50.0], size_divisibility=8,
            ignore_label=IGNORE, inference=SegmentationInference(), input_format="RGB",
        )  # fmt: skip
        torch.manual_seed(0)
        self.classifier = torch.nn.Conv2d(3, K, 1)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(images).softmax(1)


def write_pair(root, name, size, rng):
    h, w = size
    cv2.imwrite(str(root / "images" / f"{name}_seed_42.png"), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    cv2.imwrite(str(root / "masks" / f"{name}_seed_42.png"), rng.integers(0, K + 1, (h, w), dtype=np.uint8))


@pytest.fixture
def pairs(tmp_path):
    """Random PNG images and raw ADE-style masks (0 = unlabeled, class k stored as k + 1), and a weights file."""
    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for i, size in enumerate(SIZES):
        write_pair(tmp_path, f"p{i}", size, rng)
    (tmp_path / "weights.pth").write_bytes(b"weights")
    return tmp_path


def spec(root):
    return SourceSpec(None, str(root / "images"), str(root / "masks"), True, IGNORE, ".png", ".png")


def run_filter(root, **options):
    """One filter run (pass 1 on the same pairs, batches of 3; no diagnostic, a pass over the real images) into
    ``root/out/masks``."""
    settings = dict(batch_size=3, num_workers=0, progress=False, writer_threads=2, tolerance_margin=1.1)
    settings["diagnostic"] = False
    settings.update(options)
    source = spec(root).pairs()
    weights = str(root / "weights.pth")
    SyntheticFilter(PixelwiseModel().eval(), FilterOptions(str(root / "out" / "masks"), **settings), source, NAMES,
                    spec(root), weights).run()  # fmt: skip
    return source


def results(root):
    """Bytes of every filtered mask, class_loss.json and filter_stats.json."""
    out = root / "out"
    files = {n: (out / n).read_bytes() for n in ("class_loss.json", "filter_stats.json")}
    files.update({n: (out / "masks" / n).read_bytes() for n in os.listdir(out / "masks") if not n.startswith(".")})
    return files


@pytest.fixture
def header_reads(monkeypatch):
    """Paths PIL opened (the filter reads image headers with PIL; pixels are decoded with OpenCV)."""
    opened = []
    pil_open = PIL.Image.open

    def counting_open(path, *args, **kwargs):
        opened.append(str(path))
        return pil_open(path, *args, **kwargs)

    monkeypatch.setattr(PIL.Image, "open", counting_open)
    return opened


def test_a_resume_reads_no_image_header_and_gives_the_uninterrupted_result(pairs, header_reads):
    source = run_filter(pairs)
    assert set(header_reads) == {r["file_name"] for r in source.records}  # pass 1 and pass 2 read the headers
    reference = results(pairs)
    masks = pairs / "out" / "masks"
    for name in sorted(n for n in os.listdir(masks) if n.endswith(".png"))[::3]:
        os.remove(masks / name)  # as if killed: some masks missing, their batches redone
    (pairs / "out" / "filter_stats.json").unlink()
    header_reads.clear()
    run_filter(pairs)
    assert header_reads == []
    assert results(pairs) == reference


def test_a_changed_image_list_reads_the_headers_again(pairs, header_reads):
    run_filter(pairs)
    write_pair(pairs, "p9", (13, 40), np.random.default_rng(1))
    header_reads.clear()
    source = run_filter(pairs)
    paths = [r["file_name"] for r in source.records]
    assert sorted(header_reads) == sorted(paths)
    assert read_sizes(str(pairs / "out" / "masks"), paths) == SIZES + [(13, 40)]


def test_saved_sizes_describe_one_image_list_only(tmp_path):
    paths, sizes = ["x/a.jpg", "x/b.jpg", "x/c.jpg"], [(5, 6), (5, 6), (7, 8)]
    write_sizes(str(tmp_path), paths, sizes)
    assert read_sizes(str(tmp_path), paths) == sizes
    assert json.loads((tmp_path / SIZES_NAME).read_text())["runs"] == [[5, 6, 2], [7, 8, 1]]
    for other in (paths[::-1], paths[:2], ["y/a.jpg", "x/b.jpg", "x/c.jpg"], paths + ["x/d.jpg"]):
        assert read_sizes(str(tmp_path), other) is None
    (tmp_path / SIZES_NAME).write_text("{not json")
    assert read_sizes(str(tmp_path), paths) is None


def expected_stats(root):
    """Per-class labelled and filtered pixels of every pair, from the input and output masks themselves."""
    labelled, filtered, per_image = np.zeros(K, np.int64), np.zeros(K, np.int64), []
    for name in sorted(os.listdir(root / "masks")):
        raw = cv2.imread(str(root / "masks" / name), cv2.IMREAD_UNCHANGED)
        changed = raw != cv2.imread(str(root / "out" / "masks" / name), cv2.IMREAD_UNCHANGED)
        assert (raw[changed] != 0).all()
        labelled += np.bincount(raw[raw != 0] - 1, minlength=K)
        filtered += np.bincount(raw[changed] - 1, minlength=K)
        per_image.append((name, int((raw != 0).sum()), int(changed.sum())))
    return labelled, filtered, per_image


def test_the_summary_equals_counts_from_the_files_and_holds_no_per_image_list(pairs):
    run_filter(pairs)
    stats = json.loads((pairs / "out" / "filter_stats.json").read_text())
    labelled, filtered, _ = expected_stats(pairs)
    assert filtered.sum() > 0
    assert [(c["pixels"], c["filtered"]) for c in stats["classes"]] == list(zip(labelled, filtered))
    total, removed = int(labelled.sum()), int(filtered.sum())
    assert stats["overall"] == {"pixels": total, "filtered": removed, "fraction": removed / total}
    assert stats["images"] == len(SIZES) and "per_image" not in stats
    keys = ["format", "tolerance_margin", "class_loss", "images", "overall", "classes", "rule", "clean_rate"]
    assert list(stats) == keys + ["boundary_band", "diagnostic"]
    assert not (pairs / "out" / "filter_stats_per_image.jsonl").exists()


def test_per_image_stats_write_one_line_per_pair_and_leave_the_summary_unchanged(pairs):
    run_filter(pairs)
    summary = (pairs / "out" / "filter_stats.json").read_bytes()
    (pairs / "out" / "filter_stats.json").unlink()
    run_filter(pairs, per_image_stats=True)
    assert (pairs / "out" / "filter_stats.json").read_bytes() == summary
    lines = (pairs / "out" / "filter_stats_per_image.jsonl").read_text().splitlines()
    expected = [
        {"file": name, "pixels": pixels, "filtered": removed, "fraction": removed / pixels}
        for name, pixels, removed in expected_stats(pairs)[2]
    ]
    assert [json.loads(line) for line in lines] == expected
    run_filter(pairs)  # a later run without the option removes the file it would not update
    assert not (pairs / "out" / "filter_stats_per_image.jsonl").exists()


def test_records_lost_by_a_kill_are_recomputed_with_a_bounded_window(pairs, monkeypatch):
    run_filter(pairs)
    reference = results(pairs)
    for log in (pairs / "out" / "masks").glob(".filter_records.rank*.jsonl"):
        log.unlink()  # every record lost: all recomputed from the masks
    (pairs / "out" / "filter_stats.json").unlink()
    slow = run_module.record_from_files
    monkeypatch.setattr(run_module, "record_from_files", lambda *args: time.sleep(0.01) or slow(*args))
    with outstanding_futures(monkeypatch) as most:
        run_filter(pairs, writer_threads=1)
    assert results(pairs) == reference
    assert 0 < most[0] <= 4  # the default window: 4 calls per thread


def record(name, labelled, filtered):
    return {"file": name, "labelled": labelled, "filtered": filtered}


def test_log_records_keep_the_last_record_written_for_a_file(tmp_path):
    """A file logged twice counts once, with the record a front-to-back reading of the logs keeps last."""
    logs = {
        0: [record("a.png", {"0": 5}, {"0": 1}), "cut", record("b.png", {"1": 3}, {})],
        1: [record("a.png", {"0": 5}, {"0": 2}), record("gone.png", {"0": 9}, {})],  # gone.png: no longer listed
    }
    for rank, records in logs.items():  # a line cut by a kill, then a newline (what RecordLog appends after one)
        text = "".join('{"file": "a.png", "lab\n' if r == "cut" else json.dumps(r) + "\n" for r in records)
        (tmp_path / f".filter_records.rank{rank}.jsonl").write_text(text)
    last = {}
    for rank in sorted(logs):  # the plain reading: every line in order, the last record of a file wins
        last.update({r["file"]: r for r in logs[rank] if r != "cut"})
    expected = [[sum(last[f][key].get(str(c), 0) for f in ("a.png", "b.png")) for c in range(2)] for key in
                ("labelled", "filtered")]  # fmt: skip
    totals = StatsTotals(["a.png", "b.png", "c.png"], 2, per_image=True)
    totals.add_all(log_records(str(tmp_path)))
    assert [totals.labelled.tolist(), totals.filtered.tolist()] == expected == [[5, 3], [2, 0]]
    assert sorted(totals.per_image) == [("a.png", 5, 2), ("b.png", 3, 0)] and totals.missing() == [2]
    assert totals.images == 2


class outstanding_futures:
    """Context manager: the most futures submitted to any ThreadPoolExecutor and not yet finished, at any time."""

    def __init__(self, monkeypatch) -> None:
        self.monkeypatch, self.most, self.lock, self.live = monkeypatch, [0], threading.Lock(), 0

    def __enter__(self):
        submit = concurrent.futures.ThreadPoolExecutor.submit

        def counting_submit(pool, fn, *args, **kwargs):
            with self.lock:
                self.live += 1
                self.most[0] = max(self.most[0], self.live)
            future = submit(pool, fn, *args, **kwargs)
            future.add_done_callback(self._finished)
            return future

        self.monkeypatch.setattr(concurrent.futures.ThreadPoolExecutor, "submit", counting_submit)
        return self.most

    def _finished(self, _future) -> None:
        with self.lock:
            self.live -= 1

    def __exit__(self, *exc) -> None:
        self.monkeypatch.undo()


def test_image_sizes_keep_a_bounded_window_of_headers_in_flight(tmp_path, monkeypatch):
    paths = []
    for i in range(60):
        path = str(tmp_path / f"{i}.png")
        cv2.imwrite(path, np.zeros((3 + i % 5, 4, 3), np.uint8))
        paths.append(path)
    slow = batches_module._header_size
    monkeypatch.setattr(batches_module, "_header_size", lambda path: time.sleep(0.005) or slow(path))
    with outstanding_futures(monkeypatch) as most:
        sizes = image_sizes(paths, threads=2)
    assert sizes == [(3 + i % 5, 4) for i in range(60)]
    assert 0 < most[0] <= 8


def test_windowed_map_keeps_order_and_never_more_than_the_window_pending():
    pulled, yielded = [0], 0

    def items():
        for i in range(200):
            pulled[0] += 1
            yield i

    for value in windowed_map(lambda i: i * i, items(), threads=3, window=5):
        assert value == yielded * yielded
        yielded += 1
        assert pulled[0] - yielded <= 5  # 4 calls pending and the item pulled to take the yielded one's place
    assert yielded == 200
    assert list(windowed_map(str, [], threads=2)) == []


def test_windowed_map_raises_a_call_s_error_in_order_and_cancels_the_rest():
    started = []

    def fail_on_three(i):
        started.append(i)
        if i == 3:
            raise ValueError("three")
        return i

    got = []
    with pytest.raises(ValueError, match="three"):
        for value in windowed_map(fail_on_three, range(1000), threads=1, window=4):
            got.append(value)
    assert got == [0, 1, 2] and len(started) < 10
