"""Mask2Former transformer decoder: shapes, gradients, masked attention and the all-masked-row guard, on tiny dims."""

import pytest
import torch
from torch import nn

from freemask.config import get_cfg
from freemask.modeling.build import build_transformer_decoder
from freemask.modeling.transformer_decoder import MultiScaleMaskedTransformerDecoder

HIDDEN, HEADS, QUERIES, CLASSES, LAYERS, FFN, MASK_DIM = 32, 4, 5, 3, 3, 64, 16
SIZES = [(4, 4), (8, 8), (16, 16)]  # strides 32, 16, 8 of a 128x128 image; mask features at stride 4 are 32x32


def make_decoder(in_channels: int = HIDDEN, **kwargs) -> MultiScaleMaskedTransformerDecoder:
    torch.manual_seed(0)
    args = {
        "num_classes": CLASSES,
        "hidden_dim": HIDDEN,
        "num_queries": QUERIES,
        "nheads": HEADS,
        "dim_feedforward": FFN,
        "dec_layers": LAYERS,
        "mask_dim": MASK_DIM,
    }
    args.update(kwargs)
    return MultiScaleMaskedTransformerDecoder(in_channels, **args)


def make_inputs(n: int = 2, in_channels: int = HIDDEN, mask_size=(32, 32)):
    g = torch.Generator().manual_seed(1)
    x = [torch.randn(n, in_channels, h, w, generator=g) for h, w in SIZES]
    return x, torch.randn(n, MASK_DIM, *mask_size, generator=g)


def set_constant_mask_embedding(decoder: MultiScaleMaskedTransformerDecoder, e: torch.Tensor) -> None:
    """Make every query's mask embedding equal ``e`` so the predicted masks are ``e . mask_features`` everywhere."""
    last = decoder.mask_embed.layers[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(e)


@pytest.mark.parametrize("pre_norm", [False, True])
def test_output_shapes_and_aux_outputs(pre_norm):
    decoder = make_decoder(pre_norm=pre_norm)
    x, mask_features = make_inputs()
    out = decoder(x, mask_features)
    assert out["pred_logits"].shape == (2, QUERIES, CLASSES + 1)
    assert out["pred_masks"].shape == (2, QUERIES, 32, 32)
    assert len(out["aux_outputs"]) == LAYERS
    for aux in out["aux_outputs"]:
        assert aux["pred_logits"].shape == (2, QUERIES, CLASSES + 1)
        assert aux["pred_masks"].shape == (2, QUERIES, 32, 32)
    # Deep supervision: each prediction comes from a different query state.
    assert not torch.allclose(out["aux_outputs"][0]["pred_logits"], out["pred_logits"])
    assert torch.isfinite(out["pred_masks"]).all()


def test_gradients_reach_every_parameter():
    decoder = make_decoder(in_channels=24)  # a projection conv per level, so those get checked too
    x, mask_features = make_inputs(in_channels=24)
    out = decoder(x, mask_features)
    loss = out["pred_logits"].square().mean() + out["pred_masks"].square().mean()
    loss = loss + sum(a["pred_logits"].mean() + a["pred_masks"].mean() for a in out["aux_outputs"])
    loss.backward()
    missing = [name for name, p in decoder.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_official_parameter_names():
    decoder = make_decoder(in_channels=24)
    names = set(decoder.state_dict())
    expected = {
        "query_feat.weight",
        "query_embed.weight",
        "level_embed.weight",
        "decoder_norm.weight",
        "decoder_norm.bias",
        "class_embed.weight",
        "class_embed.bias",
        "input_proj.2.weight",
        "input_proj.2.bias",
    }
    for i in range(LAYERS):
        expected |= {
            f"transformer_self_attention_layers.{i}.self_attn.in_proj_weight",
            f"transformer_self_attention_layers.{i}.self_attn.out_proj.weight",
            f"transformer_self_attention_layers.{i}.norm.weight",
            f"transformer_cross_attention_layers.{i}.multihead_attn.in_proj_weight",
            f"transformer_cross_attention_layers.{i}.multihead_attn.out_proj.bias",
            f"transformer_cross_attention_layers.{i}.norm.bias",
            f"transformer_ffn_layers.{i}.linear1.weight",
            f"transformer_ffn_layers.{i}.linear2.bias",
            f"transformer_ffn_layers.{i}.norm.weight",
        }
    expected |= {f"mask_embed.layers.{j}.{p}" for j in range(3) for p in ("weight", "bias")}
    assert expected <= names
    assert decoder.query_feat.weight.shape == (QUERIES, HIDDEN)
    assert decoder.level_embed.weight.shape == (3, HIDDEN)
    assert decoder.class_embed.weight.shape == (CLASSES + 1, HIDDEN)
    assert decoder.mask_embed.layers[2].weight.shape == (MASK_DIM, HIDDEN)
    assert "mask_embed.layers.3.weight" not in names
    assert not any(n.startswith("transformer_ffn_layers.3.") for n in names)


def test_input_projection_identity_or_conv():
    same = make_decoder(in_channels=HIDDEN)
    assert all(isinstance(p, nn.Identity) for p in same.input_proj)
    assert not any(n.startswith("input_proj") for n in same.state_dict())
    forced = make_decoder(in_channels=HIDDEN, enforce_input_project=True)
    assert all(isinstance(p, nn.Conv2d) and p.kernel_size == (1, 1) for p in forced.input_proj)
    wider = make_decoder(in_channels=24)
    assert all(isinstance(p, nn.Conv2d) and p.in_channels == 24 and p.out_channels == HIDDEN for p in wider.input_proj)
    out = wider(*make_inputs(in_channels=24))
    assert out["pred_logits"].shape == (2, QUERIES, CLASSES + 1)


def test_attention_mask_restricts_cross_attention():
    """A query sees only the pixels of the coarsest level that its initial prediction covers, per image and head.

    One layer (level 0 = coarsest, 4x4). Mask logits are +/-|e|^2 on the two halves of the 32x32 mask features:
    image 0 covers the left half, image 1 the right half. Bilinearly shrunk to 4x4 (samples at columns 3.5, 11.5,
    19.5, 27.5), image 0 keeps columns 0-1 and image 1 columns 2-3. Changing each image's features outside its region
    must leave its refined queries (hence class logits) unchanged; changing them inside must change them. Two images
    also check that the (N * heads) mask rows are batch-major, as nn.MultiheadAttention reads them.
    """
    decoder = make_decoder(dec_layers=1).eval()
    e = torch.randn(MASK_DIM, generator=torch.Generator().manual_seed(3))
    set_constant_mask_embedding(decoder, e)
    x, _ = make_inputs(n=2)
    sign = torch.ones(32, 32)
    sign[:, 16:] = -1
    mask_features = e[None, :, None, None] * torch.stack([sign, -sign])[:, None]

    queries = decoder.query_feat.weight[None].expand(2, -1, -1)
    _, _, attn_mask = decoder.forward_prediction_heads(queries, mask_features, SIZES[0])
    left_only = torch.tensor([False, False, True, True]).repeat(4)
    assert attn_mask.shape == (2 * HEADS, QUERIES, 16)
    assert (attn_mask[:HEADS] == left_only).all() and (attn_mask[HEADS:] == ~left_only).all()

    def perturb(cols0: slice, cols1: slice):
        out = [t.clone() for t in x]
        out[0][0, ..., cols0] += 10 * torch.randn_like(out[0][0, ..., cols0])
        out[0][1, ..., cols1] += 10 * torch.randn_like(out[0][1, ..., cols1])
        return out

    with torch.no_grad():
        base = decoder(x, mask_features)["pred_logits"]
        outside = decoder(perturb(slice(2, 4), slice(0, 2)), mask_features)["pred_logits"]
        inside = decoder(perturb(slice(0, 2), slice(2, 4)), mask_features)["pred_logits"]
    assert torch.allclose(outside, base, atol=1e-5)
    for i in range(2):
        assert not torch.allclose(inside[i], base[i], atol=1e-3)


def test_all_masked_rows_attend_everywhere_instead_of_nan():
    """If every query predicts an empty mask, every attention row would be fully masked (softmax over nothing = NaN).

    The guard unmasks such rows, so the result must equal the run where every query's mask covers the whole image
    (masks only route attention; the queries, hence the class logits, then see the same pixels).
    """
    decoder = make_decoder()
    e = torch.randn(MASK_DIM, generator=torch.Generator().manual_seed(4))
    set_constant_mask_embedding(decoder, e)
    x, _ = make_inputs()
    positive = e[None, :, None, None].expand(2, MASK_DIM, 32, 32)

    _, _, attn_mask = decoder.forward_prediction_heads(decoder.query_feat.weight[None], -positive[:1], SIZES[1])
    assert not attn_mask.any()

    empty = decoder(x, -positive)
    full = decoder(x, positive)
    assert (empty["pred_masks"] < 0).all()  # every prediction is below 0.5 probability at every layer
    for key in ("pred_logits", "pred_masks"):
        assert torch.isfinite(empty[key]).all()
    assert torch.allclose(empty["pred_logits"], full["pred_logits"], atol=1e-5)


def test_wrong_number_of_levels_is_a_clear_error():
    decoder = make_decoder()
    x, mask_features = make_inputs()
    with pytest.raises(ValueError, match="expects 3 feature maps"):
        decoder(x[:2], mask_features)


def test_the_builder_maps_the_config_to_the_constructor_arguments():
    """Built by name from the config, the decoder has exactly the parameters of the one built from the same values."""
    cfg = get_cfg()
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES, cfg.MODEL.SEM_SEG_HEAD.MASK_DIM = CLASSES, MASK_DIM
    m = cfg.MODEL.MASK_FORMER
    m.HIDDEN_DIM, m.NUM_OBJECT_QUERIES, m.NHEADS, m.DIM_FEEDFORWARD, m.DEC_LAYERS = HIDDEN, QUERIES, HEADS, FFN, LAYERS
    built = build_transformer_decoder(cfg, 24)
    direct = make_decoder(in_channels=24)
    assert type(built) is MultiScaleMaskedTransformerDecoder
    assert {k: v.shape for k, v in built.state_dict().items()} == {k: v.shape for k, v in direct.state_dict().items()}


def test_builds_from_the_default_config():
    cfg = get_cfg()
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 150
    decoder = MultiScaleMaskedTransformerDecoder(**MultiScaleMaskedTransformerDecoder.from_config(cfg, 256))
    assert decoder.query_feat.weight.shape == (100, 256) and decoder.class_embed.out_features == 151
    assert len(decoder.transformer_cross_attention_layers) == 9
