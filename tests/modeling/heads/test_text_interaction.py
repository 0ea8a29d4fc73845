"""The text-pixel interaction against a forward written step by step in the order of bytedance/FreeSeg,
mask2former/modeling/heads/module.py (``ContextInteraction.forward``, ``MultiHeadAttention.forward``): the three
multi-scale maps, then the mask features; the text LayerNorm applied again before each (1, 2, 3, 4 times); one shared
pixel LayerNorm and one set of projections; queries scaled by head_dim ** -0.5 after their projection; the update
through out_proj, scaled by gamma, added to the normalised pixels."""

import pytest
import torch
import torch.nn.functional as F

from freemask.modeling.heads.text_interaction import TextPixelInteraction

PIXEL_DIM, TEXT_DIM, EMBED_DIM, HEADS = 16, 24, 32, 4


def _layer(**kwargs) -> TextPixelInteraction:
    """A layer whose LayerNorms and layer scale are not the identity, as trained ones are not: a repeated text
    LayerNorm with weight 1 and bias 0 would give (nearly) the same text as one."""
    torch.manual_seed(0)
    layer = TextPixelInteraction(PIXEL_DIM, TEXT_DIM, EMBED_DIM, HEADS, **kwargs).eval()
    with torch.no_grad():
        for norm in (layer.pixel_norm, layer.text_norm):
            norm.weight.uniform_(0.5, 2.0)
            norm.bias.normal_(0.0, 0.5)
        for proj in (layer.q_proj, layer.k_proj, layer.v_proj, layer.out_proj):
            proj.bias.normal_(0.0, 0.1)
        if layer.gamma is not None:
            layer.gamma.uniform_(0.5, 1.5)
    return layer


def _inputs(n=2):
    g = torch.Generator().manual_seed(1)
    mask_features = torch.randn(n, PIXEL_DIM, 12, 10, generator=g)
    multi_scale = [torch.randn(n, PIXEL_DIM, h, w, generator=g) for h, w in ((2, 3), (3, 5), (6, 5))]
    return mask_features, multi_scale, torch.randn(5, TEXT_DIM, generator=g)  # K + 1 = 5 text features


def _linear(x, layer):
    return x @ layer.weight.T + layer.bias


def freeseg_order(layer, mask_features, multi_scale, text, repeat_text_norm=True):
    """The interaction as FreeSeg's code runs it, from the layer's own parameters and plain tensor operations."""
    n = mask_features.shape[0]
    head_dim = EMBED_DIM // HEADS
    keys_in = text.expand(n, *text.shape)  # (N, T, text_dim), the same text for every image
    normed_once = F.layer_norm(keys_in, (TEXT_DIM,), layer.text_norm.weight, layer.text_norm.bias)
    outputs = []
    for pixels in [multi_scale[0], multi_scale[1], multi_scale[2], mask_features]:
        _, c, h, w = pixels.shape
        q = F.layer_norm(pixels.flatten(2).transpose(1, 2), (c,), layer.pixel_norm.weight, layer.pixel_norm.bias)
        if repeat_text_norm:
            keys_in = F.layer_norm(keys_in, (TEXT_DIM,), layer.text_norm.weight, layer.text_norm.bias)
        else:
            keys_in = normed_once
        query = (_linear(q, layer.q_proj) * head_dim**-0.5).view(n, h * w, HEADS, head_dim).transpose(1, 2)
        key = _linear(keys_in, layer.k_proj).view(n, -1, HEADS, head_dim).transpose(1, 2)
        value = _linear(keys_in, layer.v_proj).view(n, -1, HEADS, head_dim).transpose(1, 2)
        weights = torch.softmax(query @ key.transpose(-1, -2), dim=-1)  # (N, heads, HW, T)
        update = (weights @ value).transpose(1, 2).reshape(n, h * w, EMBED_DIM)
        update = _linear(update, layer.out_proj)
        out = q + (layer.gamma * update if layer.gamma is not None else update)
        outputs.append(out.transpose(1, 2).reshape(n, c, h, w))
    return outputs[3], outputs[:3]


@pytest.mark.parametrize("use_layer_scale", [True, False])
def test_interaction_computes_freeseg_order_with_the_text_norm_repeated(use_layer_scale):
    layer = _layer(use_layer_scale=use_layer_scale)
    mask_features, multi_scale, text = _inputs()
    with torch.no_grad():
        out_mask, out_scales = layer(mask_features, multi_scale, text)
        want_mask, want_scales = freeseg_order(layer, mask_features, multi_scale, text)
        once_mask, _ = freeseg_order(layer, mask_features, multi_scale, text, repeat_text_norm=False)
    torch.testing.assert_close(out_mask, want_mask, atol=2e-5, rtol=1e-5)
    for out, want in zip(out_scales, want_scales):
        torch.testing.assert_close(out, want, atol=2e-5, rtol=1e-5)
    # the case discriminates: normalising the text once gives other mask features
    assert (once_mask - want_mask).abs().max() > 1e-2


def test_text_norm_once_is_the_earlier_computation_and_other_values_are_refused():
    layer = _layer(text_norm="once")
    mask_features, multi_scale, text = _inputs()
    with torch.no_grad():
        out_mask, out_scales = layer(mask_features, multi_scale, text)
        want_mask, want_scales = freeseg_order(layer, mask_features, multi_scale, text, repeat_text_norm=False)
    torch.testing.assert_close(out_mask, want_mask, atol=2e-5, rtol=1e-5)
    for out, want in zip(out_scales, want_scales):
        torch.testing.assert_close(out, want, atol=2e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="INTERACTION_TEXT_NORM"):
        TextPixelInteraction(PIXEL_DIM, TEXT_DIM, EMBED_DIM, HEADS, text_norm="twice")


def test_attention_dropout_acts_in_training_only():
    layer = _layer()
    mask_features, multi_scale, text = _inputs()
    with torch.no_grad():
        evaluated = [layer(mask_features, multi_scale, text)[0] for _ in range(2)]
        layer.train()
        trained = [layer(mask_features, multi_scale, text)[0] for _ in range(2)]
    assert torch.equal(*evaluated)
    assert not torch.equal(*trained), "dropout 0.1 on the attention weights in training"
