"""bench/ms_deform_attn.py on a machine without CUDA: the PyTorch path at the tiny shape, one row per dtype."""

import pytest
import torch


def test_cpu_run_times_the_pytorch_path_and_says_why(bench_main, table_rows, load_script):
    out = bench_main(
        "ms_deform_attn", "--device", "cpu", "--warmup", "1", "--iters", "1", "--dtypes", "fp32,bf16,mixed"
    )
    assert "the compiled op is CUDA-only" in out
    assert "tiny fp32: ideal bytes forward 2.2 MB, forward+backward 5.8 MB" in out
    rows = table_rows(out)
    assert [(r[0], r[1], r[2]) for r in rows] == [("tiny", d, "pytorch") for d in ("fp32", "bf16", "mixed")]
    assert all(float(r[3]) > 0 and float(r[6]) > 0 for r in rows)

    # The bf16 row's error, recomputed here: the bf16 path on the script's first input set (seed 0) against the
    # float32 path on the same values. Non-zero: the row really ran in bf16 (a float32 run would show 0).
    script = load_script("ms_deform_attn")
    shape = script.SHAPES["tiny"]
    value, loc, weights, _ = script.make_inputs(shape, (torch.bfloat16, torch.bfloat16), "cpu", 0)
    sizes = [h * w for h, w in shape.levels]
    spatial, starts = torch.tensor(shape.levels), torch.tensor([sum(sizes[:i]) for i in range(len(sizes))])
    reference = script.ms_deform_attn_pytorch(value.float(), spatial, starts, loc.float(), weights.float())
    low = script.ms_deform_attn_pytorch(value, spatial, starts, loc, weights).float()
    error = ((low - reference).norm() / reference.norm()).item()
    assert 1e-4 < error < 2e-2
    assert float(rows[1][11]) == pytest.approx(error, rel=0.1)
    assert float(rows[2][11]) < 5e-3  # mixed: only the value and the output are rounded to bf16


def test_op_on_cpu_is_refused_with_the_reason(capsys, load_script):
    with pytest.raises(SystemExit):
        load_script("ms_deform_attn").main(["--device", "cpu", "--impls", "v2,v3"])
    assert "runs on CUDA tensors only" in capsys.readouterr().err


def test_mask2former_byte_count(load_script):
    shape = load_script("ms_deform_attn").SHAPES["m2f512"]
    assert shape.num_values == 5376 and shape.samples() == 8_257_536
    assert shape.bytes(4) == (275_251_200, 737_673_216)  # float32: value 88.1 MB, locations 66.1, weights 33.0
    assert shape.bytes(2, 4) == (187_170_816, 517_472_256)  # mixed: bf16 value and output, float32 locations


def test_dispatch_bench_times_four_calls_that_agree(run_bench, table_rows):
    args = ["--device", "cpu", "--shapes", "tiny", "--warmup", "1", "--iters", "1"]
    proc = run_bench("ms_deform_attn_dispatch.py", *args)
    sampling, overhead = proc.stdout.split("per-call steps outside the sampling")
    rows = table_rows(sampling)
    assert [r[1] for r in rows] == [
        "bare, tensors",
        "bare, level_shapes",
        "dispatch, tensors (before)",
        "dispatch, level_shapes (after)",
    ]
    assert all(r[0] == "tiny (batch 1)" and float(r[2]) > 0 and r[4] == "yes" for r in rows)
    assert rows[0][3] == "1.00x"
    steps = table_rows(overhead)
    assert [r[0].split(" (")[0] for r in steps] == [
        "level sizes read back from the tensors",
        "level sizes checked as Python ints",
        "choice of path",
    ]
    assert all(float(r[1]) > 0 for r in steps)
