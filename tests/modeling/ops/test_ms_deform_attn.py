import math

import pytest
import torch

from freemask.modeling.ops import MSDeformAttn, ms_deform_attn, ms_deform_attn_pytorch, set_compiled_ms_deform_attn

SHAPES = [(5, 7), (3, 4), (2, 2)]


def _loop_reference(value, shapes, starts, loc, weights):
    """Per-point bilinear sampling with explicit corners; pixel centres at (i + 0.5) / W, zero outside the map."""
    n, _, m, d = value.shape
    _, lq, _, num_levels, p, _ = loc.shape
    out = torch.zeros(n, lq, m, d, dtype=value.dtype)
    for b in range(n):
        for q in range(lq):
            for h in range(m):
                for lvl in range(num_levels):
                    height, width = shapes[lvl]
                    for k in range(p):
                        x = loc[b, q, h, lvl, k, 0].item() * width - 0.5
                        y = loc[b, q, h, lvl, k, 1].item() * height - 0.5
                        x0, y0 = math.floor(x), math.floor(y)
                        for xi, yi in ((x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1)):
                            corner_weight = (1 - abs(x - xi)) * (1 - abs(y - yi))
                            if 0 <= xi < width and 0 <= yi < height:
                                idx = int(starts[lvl]) + yi * width + xi
                                out[b, q, h] += weights[b, q, h, lvl, k] * corner_weight * value[b, idx, h]
    return out.reshape(n, lq, m * d)


def test_matches_per_point_bilinear_loop(deform_attn_inputs):
    value, spatial, starts, loc, weights = deform_attn_inputs(dtype=torch.float64)
    assert ((loc < 0) | (loc > 1)).any(), "the test must cover locations outside the maps"
    expected = _loop_reference(value, SHAPES, starts, loc, weights)
    out = ms_deform_attn_pytorch(value, spatial, starts, loc, weights)
    assert out.shape == (2, 3, 2 * 3)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)


def test_location_far_outside_samples_zero_and_pixel_centre_is_exact(deform_attn_inputs):
    value, spatial, starts, loc, weights = deform_attn_inputs(
        shapes=[(3, 4)], n=1, lq=2, m=1, d=2, p=1, dtype=torch.float64
    )
    loc[0, 0, 0, 0, 0] = torch.tensor([1.5, -0.7], dtype=torch.float64)  # entirely off the map
    loc[0, 1, 0, 0, 0] = torch.tensor([(2 + 0.5) / 4, (1 + 0.5) / 3], dtype=torch.float64)  # centre of pixel (y=1, x=2)
    weights.fill_(1.0)
    out = ms_deform_attn_pytorch(value, spatial, starts, loc, weights)
    torch.testing.assert_close(out[0, 0], torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(out[0, 1], value[0, 1 * 4 + 2, 0])


def test_gradcheck_float64(deform_attn_inputs):
    value, spatial, starts, loc, weights = deform_attn_inputs(
        shapes=[(3, 2), (2, 1)], n=1, lq=2, m=2, d=2, p=2, dtype=torch.float64
    )
    assert ((loc < 0) | (loc > 1)).any()  # gradients through zero-padded corners are checked too
    for t in (value, loc, weights):
        t.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda v, sl, w: ms_deform_attn_pytorch(v, spatial, starts, sl, w), (value, loc, weights), eps=1e-6, atol=1e-5
    )


def test_dispatch_keeps_cpu_on_pytorch_path_even_with_compiled_impl(deform_attn_inputs):
    calls = []
    previous = set_compiled_ms_deform_attn(lambda *args: calls.append(args))
    try:
        value, spatial, starts, loc, weights = deform_attn_inputs()
        out = ms_deform_attn(value, spatial, starts, loc, weights)
    finally:
        set_compiled_ms_deform_attn(previous)
    assert calls == []
    torch.testing.assert_close(out, ms_deform_attn_pytorch(value, spatial, starts, loc, weights))


def test_empty_level_is_rejected(deform_attn_inputs):
    value, _, _, loc, weights = deform_attn_inputs(shapes=[(2, 3), (1, 1)], m=2, p=1)
    spatial = torch.tensor([[2, 3], [0, 4]])
    with pytest.raises(ValueError, match="level 1 is empty"):
        ms_deform_attn_pytorch(value[:, :6], spatial, torch.tensor([0, 6]), loc, weights)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda v, sp, st, sl, w: (v[:, :-1], sp, st, sl, w), "sum to"),
        (lambda v, sp, st, sl, w: (v[0], sp, st, sl, w), r"value must be \(N, S, M, D\)"),
        (lambda v, sp, st, sl, w: (v, sp.float(), st, sl, w), "integer"),
        (lambda v, sp, st, sl, w: (v, sp, st + 1, sl, w), "level_start_index"),
        (lambda v, sp, st, sl, w: (v, sp, st[:2], sl, w), "level_start_index"),
        (lambda v, sp, st, sl, w: (v, sp, st, sl[:, :, :1], w), "sampling_locations"),
        (lambda v, sp, st, sl, w: (v, sp, st, sl, w[..., :1]), "attention_weights"),
    ],
)
def test_bad_shapes_are_rejected(mutate, message, deform_attn_inputs):
    args = mutate(*deform_attn_inputs())
    with pytest.raises(ValueError, match=message):
        ms_deform_attn_pytorch(*args)


def _module_inputs(deform_attn_meta, module, shapes, n=2, lq=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    spatial, starts, s = deform_attn_meta(shapes)
    query = torch.randn(n, lq, module.d_model, generator=g)
    ref = torch.rand(n, lq, len(shapes), 2, generator=g)
    feats = torch.randn(n, s, module.d_model, generator=g)
    return query, ref, feats, spatial, starts


def test_module_output_shape_and_backward(deform_attn_meta):
    torch.manual_seed(0)
    module = MSDeformAttn(d_model=16, n_levels=3, n_heads=4, n_points=2)
    query, ref, feats, spatial, starts = _module_inputs(deform_attn_meta, module, SHAPES)
    out = module(query, ref, feats, spatial, starts)
    assert out.shape == (2, 5, 16)
    out.square().sum().backward()
    assert all(p.grad is not None for p in module.parameters())


def test_padding_mask_removes_masked_values(deform_attn_meta):
    torch.manual_seed(0)
    module = MSDeformAttn(d_model=16, n_levels=2, n_heads=4, n_points=3)
    with torch.no_grad():  # spread the points so masked positions are actually sampled
        module.sampling_offsets.weight.normal_(0, 0.5)
    query, ref, feats, spatial, starts = _module_inputs(deform_attn_meta, module, [(6, 6), (3, 3)])
    mask = torch.zeros(feats.shape[:2], dtype=torch.bool)
    mask[:, 3:6] = True  # part of level 0
    mask[0, 36:] = True  # all of level 1 in image 0
    out = module(query, ref, feats, spatial, starts, mask)
    changed = feats.masked_fill(mask[..., None], 1e3)
    torch.testing.assert_close(module(query, ref, changed, spatial, starts, mask), out)
    assert not torch.allclose(module(query, ref, feats, spatial, starts), out, atol=1e-4)


def test_initial_sampling_offsets_and_uniform_weights():
    module = MSDeformAttn(d_model=16, n_levels=3, n_heads=8, n_points=4)
    bias = module.sampling_offsets.bias.view(8, 3, 4, 2)
    # Head h points along angle 2*pi*h/8, scaled so the larger coordinate is 1, point k at distance (k+1).
    first_points = torch.tensor(
        [[1, 0], [1, 1], [0, 1], [-1, 1], [-1, 0], [-1, -1], [0, -1], [1, -1]], dtype=torch.float32
    )
    for k in range(4):
        for lvl in range(3):
            torch.testing.assert_close(bias[:, lvl, k], first_points * (k + 1), atol=1e-5, rtol=0)
    assert module.sampling_offsets.weight.abs().sum() == 0
    assert module.attention_weights.weight.abs().sum() == 0 and module.attention_weights.bias.abs().sum() == 0
    assert module.value_proj.bias.abs().sum() == 0 and module.value_proj.weight.std() > 0


def test_module_rejects_bad_configuration_and_inputs(deform_attn_meta):
    with pytest.raises(ValueError, match="divisible by n_heads"):
        MSDeformAttn(d_model=10, n_heads=4)
    module = MSDeformAttn(d_model=16, n_levels=3, n_heads=4, n_points=2)
    query, ref, feats, spatial, starts = _module_inputs(deform_attn_meta, module, SHAPES)
    with pytest.raises(ValueError, match="n_levels=3"):
        module(query, ref[:, :, :2], feats[:, :41], spatial[:2], starts[:2])
    with pytest.raises(ValueError, match="reference_points"):
        module(query, ref[..., :1], feats, spatial, starts)


def test_locations_stay_float32_and_value_follows_autocast(monkeypatch, deform_attn_meta):
    from freemask.modeling.ops import deform_attn as msda

    torch.manual_seed(0)
    module = MSDeformAttn(d_model=16, n_levels=3, n_heads=4, n_points=2)
    query, ref, feats, spatial, starts = _module_inputs(deform_attn_meta, module, SHAPES)
    seen = []

    def spy(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, **kwargs):
        seen.append((value.dtype, sampling_locations.dtype, attention_weights.dtype))
        return ms_deform_attn_pytorch(
            value, spatial_shapes, level_start_index, sampling_locations, attention_weights, **kwargs
        )

    monkeypatch.setattr(msda, "ms_deform_attn", spy)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = module(query, ref, feats, spatial, starts)
    assert seen == [(torch.bfloat16, torch.float32, torch.float32)]  # mixed precision: bf16 value
    assert out.dtype == torch.bfloat16  # the projections still follow autocast
    torch.testing.assert_close(out.float(), module(query, ref, feats, spatial, starts), atol=0.1, rtol=0.05)
