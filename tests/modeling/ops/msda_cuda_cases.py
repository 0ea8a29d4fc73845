"""What the compiled-op test modules share (test_ms_deform_attn_cuda.py, test_ms_deform_attn_cuda_stress.py): the
extension if built, the skip markers and kernel list their decorators need at import time, seeded CUDA inputs and
the float64 comparison. A helper module, not a test module: no test module imports another."""

import pytest
import torch
from deform_attn_inputs import level_meta

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

KERNELS = ["v2", "v3"]


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
    spatial, starts, s = level_meta(shapes)
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
