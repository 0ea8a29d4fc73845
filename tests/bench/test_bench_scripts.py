"""bench/train_step.py and bench/inference.py run end to end on the toy Mask2Former and print one row per measurement.

Tiny shapes (64x64, 1 warm-up, 1 timed iteration) keep both under a few seconds each; the numbers themselves are not
checked, only that each measurement happened and the table carries it. One test runs the command itself, the others
call the script's main in this process (no interpreter start-up).
"""

import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOY = "configs/toy/semantic-segmentation/mask2former_R18_toy.yaml"
TINY = ["--config-file", TOY, "--device", "cpu", "--size", "64", "--warmup", "1", "--iters", "1"]


def test_train_step_prints_a_row_per_variant_with_comparable_losses(run_bench, table_rows):
    proc = run_bench("train_step.py", *TINY, "--batch-size", "2", "--variants", "bf16,fp32+cl")
    rows = table_rows(proc.stdout)
    expected = [("fp32", "2", "64"), ("bf16", "2", "64"), ("fp32+cl", "2", "64")]  # baseline added first
    assert [(r[0], r[1], r[2]) for r in rows] == expected
    assert rows[0][6] == "1.00x"
    for row in rows:
        assert float(row[3]) > 0 and float(row[5]) > 0  # images/s, peak memory
        assert 0 < float(row[8]) < float("inf")  # loss at last step
    # Same weights, batches and seeds: fp32 in channels_last computes the same loss up to float rounding.
    assert float(rows[2][8]) == pytest.approx(float(rows[0][8]), rel=1e-3)
    assert "MODEL.BACKBONE.PRETRAINED and MODEL.WEIGHTS set to ''" in proc.stdout


def test_inference_prints_a_row_per_variant_and_batch_size(bench_main, table_rows):
    out = bench_main("inference", *TINY, "--batch-size", "1,2", "--variants", "fp32,fp32+cl")
    rows = table_rows(out)
    assert [(r[0], r[1]) for r in rows] == [("fp32", "1"), ("fp32+cl", "1"), ("fp32", "2"), ("fp32+cl", "2")]
    for row in rows:
        assert float(row[3]) > 0 and float(row[5]) > 0
    assert [float(r[8]) for r in rows if r[0] == "fp32"] == [0.0, 0.0]  # the baseline against itself
    # channels_last changes only the memory layout: the scores agree to float rounding.
    assert all(float(r[8]) < 1e-3 for r in rows)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--variants", "fp64"], "variant 'fp64'"),
        (["--size", "100"], "not a multiple of INPUT.SIZE_DIVISIBILITY (32)"),
        (["--config-file", "missing.yaml"], "missing.yaml"),
    ],
)
@pytest.mark.parametrize("script", ["train_step", "inference"])
def test_bad_arguments_stop_with_one_clear_line(script, args, message, capsys, load_script):
    main = load_script(script).main
    with pytest.raises(SystemExit) as exit_info:
        main(["--config-file", os.path.join(REPO, TOY), "--device", "cpu", *args])
    assert exit_info.value.code != 0
    # parser errors go to stderr with code 2; config errors are the exit message itself
    assert message in capsys.readouterr().err + str(exit_info.value.code)


@pytest.mark.parametrize(
    "config",
    ["configs/toy/semantic-segmentation/segformer_mit_b0_toy.yaml",
     "configs/toy/semantic-segmentation/segmenter_vit_tiny_toy.yaml"],
)
def test_both_scripts_cover_segformer_and_segmenter(config, bench_main, table_rows):
    """The scripts take any config: the toy SegFormer and Segmenter train a step and predict in the same tables."""
    args = ["--config-file", config, "--device", "cpu", "--size", "64", "--warmup", "1", "--iters", "1"]
    train_rows = table_rows(bench_main("train_step", *args, "--batch-size", "2", "--variants", "fp32"))
    assert [r[0] for r in train_rows] == ["fp32"] and 0 < float(train_rows[0][8]) < float("inf")
    infer_rows = table_rows(bench_main("inference", *args, "--batch-size", "1", "--variants", "fp32"))
    assert [(r[0], r[1]) for r in infer_rows] == [("fp32", "1")] and float(infer_rows[0][3]) > 0


def test_resize_backends_differ_most_when_shrinking(bench_main, table_rows):
    """bench/resize_backends.py: Pillow and OpenCV disagree by rounding only when enlarging (at most 1 grey level)
    and by whole grey levels when shrinking (Pillow filters the footprint): why each family keeps its own filter."""
    rows = table_rows(bench_main("resize_backends"))
    shrink = [r for r in rows if float(r[1].lstrip("x")) < 1]
    grow = [r for r in rows if float(r[1].lstrip("x")) > 1]
    assert shrink and grow
    assert all(float(r[3]) > 1.0 and int(r[4]) > 10 for r in shrink)
    assert all(int(r[4]) <= 1 for r in grow)
