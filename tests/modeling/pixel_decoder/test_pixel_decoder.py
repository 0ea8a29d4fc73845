"""MSDeformAttnPixelDecoder and the sine position encoding: shapes, gradients, values, information flow, names."""

import math

import pytest
import torch

from freemask.config import get_cfg
from freemask.modeling.backbone.base import ShapeSpec
from freemask.modeling.build import build_pixel_decoder
from freemask.modeling.pixel_decoder import MSDeformAttnPixelDecoder, PositionEmbeddingSine
from freemask.modeling.pixel_decoder.msdeformattn_decoder import encoder_reference_points


def test_the_builder_maps_the_config_to_the_constructor_arguments(tiny_pixel_decoder):
    """Built by name from the config, the decoder has exactly the parameters of the one built from the same values."""
    cfg = get_cfg()
    h = cfg.MODEL.SEM_SEG_HEAD
    h.CONVS_DIM, h.MASK_DIM, h.TRANSFORMER_ENC_LAYERS = 32, 24, 2
    h.DEFORMABLE_TRANSFORMER_ENCODER_N_HEADS, h.DEFORMABLE_TRANSFORMER_ENCODER_DIM_FEEDFORWARD = 4, 64
    built = build_pixel_decoder(cfg, tiny_pixel_decoder.SHAPES)
    assert type(built) is MSDeformAttnPixelDecoder
    direct = tiny_pixel_decoder.build(norm=h.NORM)
    assert {k: v.shape for k, v in built.state_dict().items()} == {k: v.shape for k, v in direct.state_dict().items()}


@pytest.mark.parametrize("size", [(64, 64), (64, 160), (96, 32)])
def test_output_shapes(size, tiny_pixel_decoder):
    h, w = size
    dec = tiny_pixel_decoder.build()
    mask, enc, ms = dec.forward_features(tiny_pixel_decoder.features(2, h, w))
    assert mask.shape == (2, 24, h // 4, w // 4)
    assert enc.shape == (2, 32, h // 32, w // 32)
    assert [tuple(x.shape) for x in ms] == [(2, 32, h // s, w // s) for s in (32, 16, 8)]
    assert torch.equal(enc, ms[0])
    assert all(torch.isfinite(x).all() for x in (mask, *ms))


def test_size_not_multiple_of_32(tiny_pixel_decoder):
    # 72 x 100: maps of 3x4 / 5x7 / 9x13 / 18x25, as a stride-2 backbone with padding produces them.
    mask, _, ms = tiny_pixel_decoder.build().forward_features(tiny_pixel_decoder.features(1, 72, 100))
    assert mask.shape[-2:] == (18, 25)
    assert [tuple(x.shape[-2:]) for x in ms] == [(3, 4), (5, 7), (9, 13)]


def test_gradients_reach_every_parameter(tiny_pixel_decoder):
    dec = tiny_pixel_decoder.build()
    # At initialisation the offset and attention-weight matrices are zero (sampling depends on the query only after
    # training starts), so the positional path, level_embed included, gets no gradient; give them small values.
    with torch.no_grad():
        for layer in dec.transformer.encoder.layers:
            layer.self_attn.sampling_offsets.weight.normal_(0, 0.01)
            layer.self_attn.attention_weights.weight.normal_(0, 0.01)
    mask, _, ms = dec.forward_features(tiny_pixel_decoder.features(2, 64, 96))
    (mask.square().mean() + sum(x.square().mean() for x in ms)).backward()
    missing = [n for n, p in dec.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing, missing


def test_res5_changes_mask_features(tiny_pixel_decoder):
    """res5 only reaches stride 4 through the encoder's cross-level attention and the FPN upsampling."""
    dec = tiny_pixel_decoder.build().eval()
    feats = tiny_pixel_decoder.features(1, 64, 64)
    with torch.no_grad():
        base = dec.forward_features(feats)[0]
        feats2 = dict(feats, res5=feats["res5"] + torch.randn_like(feats["res5"]))
        changed = dec.forward_features(feats2)[0]
    assert not torch.allclose(base, changed, atol=1e-5)


def test_official_parameter_names(tiny_pixel_decoder):
    names = set(tiny_pixel_decoder.build().state_dict())
    expected = {
        "input_proj.0.0.weight",
        "input_proj.0.1.weight",
        "input_proj.2.0.bias",
        "transformer.level_embed",
        "mask_features.weight",
        "mask_features.bias",
        "adapter_1.weight",
        "adapter_1.norm.weight",
        "layer_1.weight",
        "layer_1.norm.bias",
    }
    for i in range(2):
        prefix = f"transformer.encoder.layers.{i}."
        for part in (
            "self_attn.sampling_offsets",
            "self_attn.attention_weights",
            "self_attn.value_proj",
            "self_attn.output_proj",
            "norm1",
            "linear1",
            "linear2",
            "norm2",
        ):
            expected |= {prefix + part + ".weight", prefix + part + ".bias"}
    assert expected <= names, sorted(expected - names)
    dec = tiny_pixel_decoder.build()
    assert dec.transformer.level_embed.shape == (3, 32)
    assert isinstance(dec.pe_layer, PositionEmbeddingSine)
    # input_proj goes coarsest first: its first projection takes res5's 48 channels.
    assert [p[0].in_channels for p in dec.input_proj] == [48, 40, 24]
    assert dec.mask_features.kernel_size == (1, 1)
    assert "adapter_2.weight" not in names  # only res2 is an FPN level


def test_missing_transformer_feature_names_key(tiny_pixel_decoder):
    with pytest.raises(ValueError, match="DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES"):
        MSDeformAttnPixelDecoder(tiny_pixel_decoder.SHAPES, conv_dim=32, transformer_in_features=("res3", "res6"))


def test_position_encoding_values_and_shape():
    pe = PositionEmbeddingSine()  # 128 per axis, temperature 1e4, normalised by 2*pi
    h, w = 5, 7
    out = pe(torch.zeros(2, 3, h, w))
    assert out.shape == (2, 256, h, w) and out.dtype == torch.float32
    for i, j in [(0, 0), (2, 3), (4, 6)]:
        ty = (i + 1) / (h + 1e-6) * 2 * math.pi
        tx = (j + 1) / (w + 1e-6) * 2 * math.pi
        for k in (0, 1, 2, 3, 50, 127):
            d = 10000 ** (2 * (k // 2) / 128)
            fn = math.sin if k % 2 == 0 else math.cos
            assert out[1, k, i, j].item() == pytest.approx(fn(ty / d), abs=1e-5)
            assert out[1, 128 + k, i, j].item() == pytest.approx(fn(tx / d), abs=1e-5)
    # y-channels constant along a row, x-channels constant along a column.
    assert torch.allclose(out[:, :128], out[:, :128, :, :1].expand_as(out[:, :128]))
    assert torch.allclose(out[:, 128:], out[:, 128:, :1, :].expand_as(out[:, 128:]))


def test_reference_points_are_pixel_centres():
    shapes = [(2, 3), (4, 6), (8, 12)]
    ref = encoder_reference_points(shapes, batch=2, num_levels=3, device=torch.device("cpu"))
    assert ref.shape == (2, 6 + 24 + 96, 3, 2)
    assert (ref > 0).all() and (ref < 1).all()
    # First pixel of the second level (4x6): centre (0.5/6, 0.5/4), same normalised point on every level.
    assert torch.allclose(ref[0, 6], torch.tensor([0.5 / 6, 0.5 / 4]).expand(3, 2))
    assert torch.allclose(ref[0, -1, 0], torch.tensor([11.5 / 12, 7.5 / 8]))


def test_builds_from_the_default_config_at_swin_t_shapes():
    cfg = get_cfg()
    shapes = {f"res{i + 2}": ShapeSpec(96 * 2**i, 4 * 2**i) for i in range(4)}
    decoder = MSDeformAttnPixelDecoder(shapes, **MSDeformAttnPixelDecoder.from_config(cfg, shapes))
    assert len(decoder.transformer.encoder.layers) == 6
    mask_features, _, multi_scale = decoder(
        {k: torch.randn(1, s.channels, 64 // s.stride, 64 // s.stride) for k, s in shapes.items()}
    )
    assert mask_features.shape == (1, 256, 16, 16) and [m.shape[-1] for m in multi_scale] == [2, 4, 8]
