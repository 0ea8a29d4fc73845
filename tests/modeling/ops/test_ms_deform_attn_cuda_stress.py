"""The compiled MSDeformAttn op where small random tests do not reach (GPU only; skipped with the reason otherwise).

- The real Mask2Former 512x512 level sizes (64x64, 32x32, 16x16, 8 heads of 32 channels, 4 points): thousands of
  blocks in several waves, and a share of queries sampling one spot so dL/dvalue takes many atomics on one address.
- bfloat16 with D = 264: 33 vectors of 8 channels, so 32 lanes per item and a second channel chunk (D > 32 * V).
- Mixed precision: a bfloat16/float16 value with float32 locations and weights, against float64.
- Poisoned outputs: torch's deterministic mode fills every fresh ``empty`` with NaN, so an output element a kernel
  forgets to write fails the finiteness check instead of passing on leftover zeros.
- A non-default stream: the op must run on the caller's current stream, after that stream's earlier work.
- v3 against v2: the same forward, bit for bit (v3 keeps v2's multiply-adds and their order).
Both kernel versions run everything.
"""

import warnings

import pytest
import torch
from msda_cuda_cases import (
    KERNELS,
    TOLERANCE,
    away_from_cell_edges,
    check_against_float64,
    needs_gpu,
    random_inputs,
    rel_error,
    run,
)

from freemask.modeling.ops import ms_deform_attn_cuda as loader
from freemask.modeling.ops import ms_deform_attn_pytorch

try:
    import freemask_msda
except ImportError:
    freemask_msda = None

M2F512 = [(64, 64), (32, 32), (16, 16)]


def compiled(kernel):
    return loader.compiled_fn(freemask_msda, kernel=kernel)


def hot_spot(loc, fraction=0.1):
    """Move ``fraction`` of the queries' samples onto one point of every level: many atomics on one address."""
    hot = torch.rand(loc.shape[:2], device=loc.device, generator=torch.Generator("cuda").manual_seed(9)) < fraction
    return torch.where(hot[:, :, None, None, None, None], torch.full_like(loc, 0.4321), loc)


@needs_gpu
@pytest.mark.parametrize("kernel", KERNELS)
def test_mask2former_512_level_sizes_fp32_forward_backward_against_float64(kernel):
    value, spatial, starts, loc, weights, grad_out = random_inputs(M2F512, 2, 5376, 8, 32, 4, torch.float32, 11)
    # Each query's points clustered around one random spot (corners shared within the query), a tenth of the queries
    # on one common spot; then nudged off cell edges again.
    loc = away_from_cell_edges(hot_spot((loc - 0.5) * 0.05 + torch.rand_like(loc[..., :1, :1, :1, :])), M2F512)
    check_against_float64(compiled(kernel), (value, spatial, starts, loc, weights, grad_out), torch.float32)


@needs_gpu
@pytest.mark.parametrize("kernel", KERNELS)
def test_bf16_multi_chunk_vector_path(kernel):
    inputs = random_inputs([(12, 10), (6, 5)], 2, 30, 2, 264, 4, torch.bfloat16, 12)
    assert inputs[0].shape[-1] % 8 == 0 and inputs[0].shape[-1] > 32 * 8  # vectorised, two chunks
    check_against_float64(compiled(kernel), inputs, torch.bfloat16)


@needs_gpu
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("points", [4, 3], ids=lambda p: f"P{p}")
def test_mixed_precision_value_with_float32_locations(kernel, dtype, points):
    inputs = random_inputs([(16, 16), (8, 8), (4, 4)], 3, 50, 8, 32, points, dtype, 13, location_dtype=torch.float32)
    assert inputs[0].dtype == dtype and inputs[3].dtype == inputs[4].dtype == torch.float32
    check_against_float64(compiled(kernel), inputs, dtype)


@needs_gpu
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("d", [32, 3, 264], ids=lambda d: f"D{d}")
def test_every_output_element_is_written(kernel, dtype, d):
    inputs = random_inputs([(9, 7), (5, 4)], 3, 17, 3, d, 4, dtype, 14)
    previous = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    fill = torch.utils.deterministic.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True, warn_only=True)  # the backward's atomics only warn
    torch.utils.deterministic.fill_uninitialized_memory = True
    try:
        assert torch.empty(4, device="cuda").isnan().all()  # the poisoning is on
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="freemask_msda backward")
            results = run(compiled(kernel), *inputs)
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.utils.deterministic.fill_uninitialized_memory = fill
    for name, got in zip(("output", "grad value", "grad locations", "grad weights"), results):
        assert torch.isfinite(got).all(), f"{name}: {(~torch.isfinite(got)).sum().item()} elements never written"
    reference = run(ms_deform_attn_pytorch, *[t.double() if t.is_floating_point() else t for t in inputs])
    assert rel_error(results[0], reference[0]) <= TOLERANCE[dtype]


@needs_gpu
@pytest.mark.parametrize("kernel", KERNELS)
def test_runs_on_the_callers_stream_after_its_earlier_work(kernel):
    value, spatial, starts, loc, weights, grad_out = random_inputs(M2F512, 1, 500, 8, 32, 4, torch.float32, 15)
    new_value = torch.randn_like(value)
    expected = ms_deform_attn_pytorch(new_value, spatial, starts, loc, weights)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        torch.cuda._sleep(50_000_000)  # tens of milliseconds: a kernel on the default stream would not wait
        value.copy_(new_value)
        out = compiled(kernel)(value, spatial, starts, loc, weights)
    torch.cuda.current_stream().wait_stream(side)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


@needs_gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64], ids=str)
@pytest.mark.parametrize("points", [4, 2], ids=lambda p: f"P{p}")
def test_v3_forward_is_v2_forward_bit_for_bit(dtype, points):
    value, spatial, starts, loc, weights, _ = random_inputs(M2F512, 1, 5376, 8, 32, points, dtype, 16)
    loc, weights = loc.to(torch.promote_types(dtype, torch.float32)), weights.to(loc.dtype)
    with torch.no_grad():
        v2 = compiled("v2")(value, spatial, starts, loc, weights)
        v3 = compiled("v3")(value, spatial, starts, loc, weights)
    assert torch.equal(v2, v3), f"max difference {(v2.double() - v3.double()).abs().max().item():.3e}"
