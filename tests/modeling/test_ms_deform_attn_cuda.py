"""The compiled MSDeformAttn op (``ops/``, module ``freemask_msda``) against the PyTorch path.

The first test needs only the built extension (it runs on the CPU machine after ``pip install
--no-build-isolation ./ops``); the others need a GPU too and are skipped with the reason otherwise. References are
the PyTorch path in float64 on the same (already rounded) inputs; errors are ||op - ref|| / ||ref||. Inputs are fresh
random draws with locations in [-0.3, 1.3], so points and corners fall outside the maps (zero padding). Every GPU test
runs both kernel versions (FREEMASK_MSDA_KERNEL v2 and v3); test_ms_deform_attn_cuda_stress.py has the real sizes,
poisoned outputs, streams and the mixed-precision inputs.
"""

import pytest
import torch
from test_mask_former import striped_batch, tiny_cfg
from test_ms_deform_attn import _meta

from freemask.modeling import build_model
from freemask.modeling.ops import deform_attn, ms_deform_attn_pytorch
from freemask.modeling.ops import ms_deform_attn_cuda as loader

try:
    import freemask_msda
except ImportError:
    freemask_msda = None

needs_extension = pytest.mark.skipif(
    freemask_msda is None, reason="freemask_msda is not built: pip install --no-build-isolation ./ops"
)
needs_gpu = pytest.mark.skipif(
    freemask_msda is None or not torch.cuda.is_available(),
    reason="no CUDA GPU visible" if freemask_msda else "freemask_msda is not built (and a CUDA GPU is needed too)",
)


KERNELS = ["v2", "v3"]


@needs_extension
def test_extension_exposes_forward_and_backward_and_refuses_cpu_tensors():
    assert callable(freemask_msda.forward) and callable(freemask_msda.backward)
    value, loc, weights = torch.zeros(1, 4, 1, 8), torch.zeros(1, 2, 1, 1, 1, 2), torch.zeros(1, 2, 1, 1, 1)
    with pytest.raises(RuntimeError, match="must be CUDA tensors"):
        freemask_msda.forward(value, loc, weights, [2, 2], [0])
    for kernel in loader.KERNELS.values():
        with pytest.raises(RuntimeError, match="must be CUDA tensors"):
            freemask_msda.forward(value, loc, weights, [2, 2], [0], kernel)
    with pytest.raises(RuntimeError, match=r"kernel must be 2 or 3 \(FREEMASK_MSDA_KERNEL=v2\|v3\), got 4"):
        freemask_msda.forward(value, loc, weights, [2, 2], [0], 4)


def away_from_cell_edges(loc, shapes):
    """Points moved 1e-3 pixel away from cell edges: there loc * W - 0.5 rounded in float32 can land in the
    neighbouring cell, where d/dloc (a one-sided derivative) differs from the float64 reference's by O(1).
    Float16/bfloat16 locations times an integer size are exact in float32, so they need no nudge."""
    sizes = torch.tensor([[w, h] for h, w in shapes], device=loc.device)[None, None, None, :, None, :]
    frac = (loc.double() * sizes - 0.5).frac().abs()
    return torch.where((frac < 1e-3) | (frac > 1 - 1e-3), loc + 2e-3 / sizes, loc).to(loc.dtype)


def random_inputs(shapes, n, lq, m, d, p, dtype, seed, location_dtype=None):
    """``location_dtype`` (float32 for the mixed-precision case) for locations and weights; default ``dtype``."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    spatial, starts, s = _meta(shapes)
    value = torch.randn(n, s, m, d, device="cuda", generator=g).to(dtype)
    location_dtype = location_dtype or dtype
    loc = (torch.rand(n, lq, m, len(shapes), p, 2, device="cuda", generator=g) * 1.6 - 0.3).to(location_dtype)
    loc = away_from_cell_edges(loc, shapes)
    logits = torch.randn(n, lq, m, len(shapes) * p, device="cuda", generator=g)
    weights = logits.softmax(-1).view(n, lq, m, len(shapes), p).to(location_dtype)
    grad_out = torch.randn(n, lq, m * d, device="cuda", generator=g).to(dtype)
    return value, spatial, starts, loc, weights, grad_out


def run(fn, value, spatial, starts, loc, weights, grad_out):
    leaves = [t.detach().clone().requires_grad_() for t in (value, loc, weights)]
    out = fn(leaves[0], spatial, starts, leaves[1], leaves[2])
    out.backward(grad_out)
    return [out] + [t.grad for t in leaves]


def rel_error(got, want):
    return ((got.double() - want).norm() / want.norm().clamp_min(1e-30)).item()


# (level shapes, N, Lq, M, D, P): the Mask2Former head dims, an odd batch, a scalar-path D, many levels, D > 32 * V.
SHAPES = [
    ([(16, 16), (8, 8), (4, 4)], 3, 50, 8, 32, 4),
    ([(13, 7), (7, 4), (4, 2), (2, 1)], 5, 37, 4, 64, 2),
    ([(9, 11)], 1, 20, 2, 3, 1),
    ([(6, 6), (5, 3), (3, 3), (2, 2), (1, 2)], 2, 9, 3, 8, 3),
    ([(5, 4), (3, 2)], 2, 6, 1, 260, 2),
]
# What float32 accumulation allows: the output and dL/dvalue are rounded once to the value's dtype (relative rounding
# 2^-9 for bfloat16, 2^-11 for float16, i.e. about 1.1e-3 / 2.8e-4 in norm), the location and weight gradients once to
# theirs; the rest is float32 summation (~1e-6).
TOLERANCE = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 5e-3}


def check_against_float64(compiled, inputs, dtype):
    reference = run(ms_deform_attn_pytorch, *[t.double() if t.is_floating_point() else t for t in inputs])
    results = run(compiled, *inputs)
    names = ("output", "grad value", "grad locations", "grad weights")
    for name, got, want, given in zip(names, results, reference, (inputs[0], inputs[0], inputs[3], inputs[4])):
        assert got.dtype == given.dtype and torch.isfinite(got).all(), name
        assert rel_error(got, want) <= TOLERANCE[dtype], f"{name}: {rel_error(got, want):.2e}"


@needs_gpu
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"N{s[1]}M{s[3]}D{s[4]}L{len(s[0])}P{s[5]}")
def test_forward_and_three_gradients_match_pytorch(shape, dtype, kernel):
    levels, n, lq, m, d, p = shape
    compiled = loader.compiled_fn(freemask_msda, kernel=kernel)
    for seed in range(2):
        check_against_float64(compiled, random_inputs(levels, n, lq, m, d, p, dtype, seed), dtype)


@needs_gpu
@pytest.mark.parametrize("kernel", KERNELS)
def test_non_contiguous_inputs_and_metadata_on_the_gpu(kernel):
    value, spatial, starts, loc, weights, grad_out = random_inputs([(8, 8), (4, 4)], 2, 10, 4, 32, 4, torch.float32, 3)
    strided = [t.transpose(0, 1).contiguous().transpose(0, 1) for t in (value, loc, weights, grad_out)]
    assert not any(t.is_contiguous() for t in strided)  # same values, batch-minor strides
    compiled = loader.compiled_fn(freemask_msda, kernel=kernel)
    value_t, loc_t, weights_t, grad_out_t = strided
    for got, want in zip(
        run(compiled, value_t, spatial.cuda(), starts.cuda(), loc_t, weights_t, grad_out_t),
        run(ms_deform_attn_pytorch, value, spatial, starts, loc, weights, grad_out),
    ):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@needs_gpu
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("points", [2, 4], ids=lambda p: f"P{p}")  # P=4: v3's vectorised units
def test_gradcheck_float64(kernel, points):
    value, spatial, starts, loc, weights, _ = random_inputs([(3, 2), (2, 1)], 2, 3, 2, 4, points, torch.float64, 4)
    compiled = loader.compiled_fn(freemask_msda, kernel=kernel)
    leaves = [t.requires_grad_() for t in (value, loc, weights)]
    assert torch.autograd.gradcheck(lambda v, sl, w: compiled(v, spatial, starts, sl, w), leaves, eps=1e-6, atol=1e-5)


@needs_gpu
def test_empty_level_and_wrong_dtype_are_rejected():
    value, spatial, starts, loc, weights, _ = random_inputs([(2, 3), (1, 1)], 1, 2, 2, 8, 1, torch.float32, 5)
    compiled = loader.compiled_fn(freemask_msda)
    with pytest.raises(ValueError, match="level 1 is empty"):
        compiled(value[:, :6], torch.tensor([[2, 3], [0, 4]]), torch.tensor([0, 6]), loc, weights)
    # The binding itself (the wrapper casts): half locations next to a float32 value are refused by name.
    with pytest.raises(RuntimeError, match="sampling_locations and attention_weights must be Float with a Float"):
        freemask_msda.forward(value, loc.half(), weights.half(), [2, 3, 1, 1], [0, 6])


@needs_gpu
@pytest.mark.parametrize("kernel", KERNELS)
def test_mask2former_trains_to_the_same_losses_with_op_and_fallback(repo_root, monkeypatch, kernel):
    monkeypatch.setenv(loader.KERNEL_ENV, kernel)
    monkeypatch.setattr(loader, "_load_attempted", False)  # install the op anew, with this kernel
    monkeypatch.setattr(deform_attn, "_COMPILED_IMPL", None)

    def train(impl):
        monkeypatch.setenv(loader.IMPL_ENV, impl)
        cfg = tiny_cfg(repo_root)
        cfg.merge_from_list(["MODEL.DEVICE", "cuda", "MODEL.SEM_SEG_HEAD.CONVS_DIM", "256"])  # 8 heads of 32 channels
        torch.manual_seed(0)
        model = build_model(cfg).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        batch = striped_batch(n=3, size=64)
        losses = []
        for _ in range(3):
            loss = sum(model(batch).values())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        return losses

    with_op, fallback = train("cuda"), train("pytorch")
    # At initialisation MSDeformAttn puts sampling points at whole-pixel offsets from pixel centres, i.e. exactly on
    # cell edges: there loc * W - 0.5 computed with a fused multiply-add (the kernels) and without (grid_sample) can
    # round to opposite sides and pick the neighbouring cell, changing those samples' one-sided location gradients.
    # The first loss agrees to float32 summation order; 1e-4 leaves room for that case, later steps diverge slowly.
    assert with_op[0] == pytest.approx(fallback[0], rel=1e-4)
    assert with_op == pytest.approx(fallback, rel=1e-3)
