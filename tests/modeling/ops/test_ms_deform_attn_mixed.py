"""Mixed precision in multi-scale deformable attention on the CPU: a bfloat16/float16 value with float32 locations
and weights (the PyTorch path, the module under autocast) and the pixel decoder's DEFORMABLE_FP32 switch.

Tolerances: a bfloat16 value carries 8 significant bits (relative rounding 2^-9 = 2e-3 per element); the sampled
sums are accumulated in float32, so the result's relative error stays near that of its rounded inputs, ~5e-3.
"""

import pytest
import torch

from freemask.config import get_cfg
from freemask.modeling.ops import ms_deform_attn_pytorch
from freemask.modeling.pixel_decoder import MSDeformAttnPixelDecoder

LOW = [torch.bfloat16, torch.float16]


def rel_error(got, want):
    return ((got.double() - want.double()).norm() / want.double().norm()).item()


@pytest.mark.parametrize("dtype", LOW, ids=str)
def test_mixed_inputs_equal_the_float32_path_to_low_precision_tolerance(dtype, deform_attn_inputs):
    value, spatial, starts, loc, weights = deform_attn_inputs(d=8, lq=20, seed=1)
    leaves = [value.to(dtype).requires_grad_(), loc.requires_grad_(), weights.requires_grad_()]
    out = ms_deform_attn_pytorch(leaves[0], spatial, starts, leaves[1], leaves[2])
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(2))
    out.backward(grad_out.to(dtype))
    # The float32 reference on the same rounded value: what is left is the mixed path's own arithmetic.
    ref_leaves = [leaves[0].detach().float().requires_grad_(), loc.detach().clone().requires_grad_()]
    ref_leaves.append(weights.detach().clone().requires_grad_())
    ref = ms_deform_attn_pytorch(ref_leaves[0], spatial, starts, ref_leaves[1], ref_leaves[2])
    ref.backward(grad_out.to(dtype).float())
    assert out.dtype == dtype and leaves[0].grad.dtype == dtype and leaves[1].grad.dtype == torch.float32
    assert rel_error(out, ref) < 5e-3
    for got, want in zip([t.grad for t in leaves], [t.grad for t in ref_leaves]):
        assert rel_error(got, want) < 5e-3
    # ... and against float32 on the unrounded value: the rounding of the value is the whole difference.
    full = ms_deform_attn_pytorch(value.detach(), spatial, starts, loc.detach(), weights.detach())
    assert rel_error(out, full) < 1e-2


def test_mixed_path_accumulates_in_float32(deform_attn_inputs):
    """Many equal samples summed: a bfloat16 accumulator would lose the small ones, float32 keeps them."""
    value, spatial, starts, loc, weights = deform_attn_inputs(shapes=[(4, 4)], d=8, p=64, seed=3)
    mixed = ms_deform_attn_pytorch(value.bfloat16(), spatial, starts, loc, weights)
    all_low = ms_deform_attn_pytorch(value.bfloat16(), spatial, starts, loc.bfloat16(), weights.bfloat16())
    ref = ms_deform_attn_pytorch(value.bfloat16().float(), spatial, starts, loc, weights)
    assert rel_error(mixed, ref) < 5e-3 < rel_error(all_low, ref)


def test_pytorch_path_ignores_an_enclosing_autocast(deform_attn_inputs):
    value, spatial, starts, loc, weights = deform_attn_inputs(d=8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = ms_deform_attn_pytorch(value, spatial, starts, loc, weights)
    assert out.dtype == torch.float32  # not bf16: the einsum runs in the inputs' dtype, not autocast's
    torch.testing.assert_close(out, ms_deform_attn_pytorch(value, spatial, starts, loc, weights))


def test_decoder_key_maps_to_the_constructor(tiny_pixel_decoder):
    cfg = get_cfg()
    assert cfg.MODEL.SEM_SEG_HEAD.DEFORMABLE_FP32 is True  # official behaviour until measured
    cfg.MODEL.SEM_SEG_HEAD.DEFORMABLE_FP32 = False
    assert MSDeformAttnPixelDecoder.from_config(cfg, tiny_pixel_decoder.SHAPES)["force_fp32"] is False


@pytest.mark.parametrize("deformable_fp32", [True, False])
def test_decoder_under_bf16_autocast(deformable_fp32, monkeypatch, tiny_pixel_decoder):
    """DEFORMABLE_FP32 True: float32 outputs, as outside autocast. False: bf16 outputs, the op fed a bf16 value with
    float32 locations and weights, and mask features within bf16 noise of the float32 decoder."""
    from freemask.modeling.ops import deform_attn

    decoder = tiny_pixel_decoder.build(force_fp32=deformable_fp32).eval()
    features = tiny_pixel_decoder.features(2, 64, 64)
    seen = []
    original = deform_attn.ms_deform_attn

    def spy(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, **kwargs):
        seen.append((value.dtype, sampling_locations.dtype, attention_weights.dtype))
        return original(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, **kwargs)

    with torch.no_grad():
        reference = decoder(features)
        monkeypatch.setattr(deform_attn, "ms_deform_attn", spy)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mask_features, encoder_features, multi_scale = decoder(features)
    expected = torch.float32 if deformable_fp32 else torch.bfloat16
    assert {t.dtype for t in (mask_features, encoder_features, *multi_scale)} == {expected}
    assert set(seen) == {(expected, torch.float32, torch.float32)}
    error = rel_error(mask_features, reference[0])
    assert error < 1e-6 if deformable_fp32 else 1e-3 < error < 5e-2
