"""bench/generate.py runs both designs on the tiny model and prints the side-by-side table and the ADE20K line."""

import importlib.util
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_bench_prints_both_designs_and_they_compute_the_same_image(capsys):
    spec = importlib.util.spec_from_file_location("bench_generate", REPO / "bench" / "generate.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    report = bench.main(["--size", "32", "--steps", "1", "--batch-size", "2", "--rounds", "1"])
    assert report in capsys.readouterr().out
    assert "| FreestyleNet (re-created) | 1 | float32 | 2 |" in report and "| ours | 2 | float32 | 1 |" in report
    assert "20210 masks x 20 seeds on 8 GPUs" in report
    difference = int(report.split("first image: ")[1].split(" ")[0])
    assert difference <= 2  # float32, same model and noise: the re-creation computes what the backend computes
