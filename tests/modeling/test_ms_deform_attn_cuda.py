"""The compiled MSDeformAttn op (``ops/``, module ``freemask_msda``) against the PyTorch path.

The first test needs only the built extension (it runs on the CPU machine after ``pip install
--no-build-isolation ./ops``); the others need a GPU too and are skipped with the reason otherwise. References are
the PyTorch path in float64 on the same (already rounded) inputs; errors are ||op - ref|| / ||ref||. Inputs are fresh
random draws with locations in [-0.3, 1.3], so points and corners fall outside the maps (zero padding).
"""

import pytest
import torch

from freemask.modeling import build_model
from freemask.modeling.ops import ms_deform_attn_cuda as loader
from freemask.modeling.ops import ms_deform_attn_pytorch

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


@needs_extension
def test_extension_exposes_forward_and_backward_and_refuses_cpu_tensors():
    assert callable(freemask_msda.forward) and callable(freemask_msda.backward)
    value, loc, weights = torch.zeros(1, 4, 1, 8), torch.zeros(1, 2, 1, 1, 1, 2), torch.zeros(1, 2, 1, 1, 1)
    with pytest.raises(RuntimeError, match="must be CUDA tensors"):
        freemask_msda.forward(value, loc, weights, [2, 2], [0])


def random_inputs(deform_attn_meta, shapes, n, lq, m, d, p, dtype, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    spatial, starts, s = deform_attn_meta(shapes)
    value = torch.randn(n, s, m, d, device="cuda", generator=g).to(dtype)
    loc = (torch.rand(n, lq, m, len(shapes), p, 2, device="cuda", generator=g) * 1.6 - 0.3).to(dtype)
    # Keep float32 points 1e-3 pixel away from cell edges: there loc * W - 0.5 rounded in float32 can land in the
    # neighbouring cell, where d/dloc (a one-sided derivative) differs from the float64 reference's by O(1).
    # Float16/bfloat16 locations times an integer size are exact in float32, so they need no nudge.
    sizes = torch.tensor([[w, h] for h, w in shapes], device="cuda")[None, None, None, :, None, :]
    frac = (loc.double() * sizes - 0.5).frac().abs()
    loc = torch.where((frac < 1e-3) | (frac > 1 - 1e-3), loc + 2e-3 / sizes, loc).to(dtype)
    logits = torch.randn(n, lq, m, len(shapes) * p, device="cuda", generator=g)
    weights = logits.softmax(-1).view(n, lq, m, len(shapes), p).to(dtype)
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
TOLERANCE = {torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 1e-2}


@needs_gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"N{s[1]}M{s[3]}D{s[4]}L{len(s[0])}P{s[5]}")
def test_forward_and_three_gradients_match_pytorch(shape, dtype, deform_attn_meta):
    levels, n, lq, m, d, p = shape
    compiled = loader.compiled_fn(freemask_msda)
    for seed in range(2):
        inputs = random_inputs(deform_attn_meta, levels, n, lq, m, d, p, dtype, seed)
        reference = run(ms_deform_attn_pytorch, *[t.double() if t.is_floating_point() else t for t in inputs])
        results = run(compiled, *inputs)
        for name, got, want in zip(("output", "grad value", "grad locations", "grad weights"), results, reference):
            assert got.dtype == dtype and torch.isfinite(got).all(), name
            assert rel_error(got, want) <= TOLERANCE[dtype], f"{name}: {rel_error(got, want):.2e}"


@needs_gpu
def test_non_contiguous_inputs_and_metadata_on_the_gpu(deform_attn_meta):
    levels = [(8, 8), (4, 4)]
    inputs = random_inputs(deform_attn_meta, levels, 2, 10, 4, 32, 4, torch.float32, 3)
    value, spatial, starts, loc, weights, grad_out = inputs
    strided = [t.transpose(0, 1).contiguous().transpose(0, 1) for t in (value, loc, weights, grad_out)]
    assert not any(t.is_contiguous() for t in strided)  # same values, batch-minor strides
    compiled = loader.compiled_fn(freemask_msda)
    value_t, loc_t, weights_t, grad_out_t = strided
    for got, want in zip(
        run(compiled, value_t, spatial.cuda(), starts.cuda(), loc_t, weights_t, grad_out_t),
        run(ms_deform_attn_pytorch, value, spatial, starts, loc, weights, grad_out),
    ):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@needs_gpu
def test_gradcheck_float64(deform_attn_meta):
    levels = [(3, 2), (2, 1)]
    value, spatial, starts, loc, weights, _ = random_inputs(deform_attn_meta, levels, 2, 3, 2, 4, 2, torch.float64, 4)
    compiled = loader.compiled_fn(freemask_msda)
    leaves = [t.requires_grad_() for t in (value, loc, weights)]
    assert torch.autograd.gradcheck(lambda v, sl, w: compiled(v, spatial, starts, sl, w), leaves, eps=1e-6, atol=1e-5)


@needs_gpu
def test_empty_level_and_wrong_dtype_are_rejected(deform_attn_meta):
    levels = [(2, 3), (1, 1)]
    value, spatial, starts, loc, weights, _ = random_inputs(deform_attn_meta, levels, 1, 2, 2, 8, 1, torch.float32, 5)
    compiled = loader.compiled_fn(freemask_msda)
    with pytest.raises(ValueError, match="level 1 is empty"):
        compiled(value[:, :6], torch.tensor([[2, 3], [0, 4]]), torch.tensor([0, 6]), loc, weights)
    with pytest.raises(RuntimeError, match="share one floating dtype"):
        compiled(value.half(), spatial, starts, loc, weights)


@needs_gpu
def test_mask2former_trains_to_the_same_losses_with_op_and_fallback(mask_former_tiny_cfg, striped_batch,
                                                                    monkeypatch):
    def train(impl):
        monkeypatch.setenv(loader.IMPL_ENV, impl)
        cfg = mask_former_tiny_cfg()
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
    assert with_op[0] == pytest.approx(fallback[0], rel=1e-5)
    assert with_op == pytest.approx(fallback, rel=1e-3)
