"""FreeSeg's stage-2 building blocks on hand-made tensors: the text-pixel interaction, the open decoder's class head,
the CLIP ensemble (seen flag switching) and the probability entry points of the post-processing."""

import pytest
import torch

from freemask.modeling.heads.text_interaction import TextPixelInteraction
from freemask.modeling.open_vocab.ensemble import ensemble_probabilities, sharpen
from freemask.modeling.postprocess import (
    instance_from_probs,
    instance_inference,
    panoptic_inference,
    panoptic_segments,
    semantic_from_probs,
    semantic_inference,
)
from freemask.modeling.transformer_decoder import MultiScaleMaskedTransformerDecoder
from freemask.modeling.transformer_decoder.open_vocab_decoder import OpenVocabMaskedTransformerDecoder

SIZES = [(4, 4), (8, 8), (16, 16)]


def _maps(n=2, c=16):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, c, 32, 32, generator=g), [torch.randn(n, c, h, w, generator=g) for h, w in SIZES]


# ------------------------------------------------------------------------------------------------ interaction
def test_interaction_keeps_every_map_shape_and_adds_a_text_dependent_update():
    torch.manual_seed(0)
    layer = TextPixelInteraction(pixel_dim=16, text_dim=24, embed_dim=32, num_heads=4).eval()
    mask_features, multi_scale = _maps()
    text = torch.randn(5, 24)  # K + 1 = 5 text features, shared by the batch
    out_mask, out_scales = layer(mask_features, multi_scale, text)
    assert out_mask.shape == mask_features.shape
    assert [x.shape for x in out_scales] == [x.shape for x in multi_scale]
    # LN(x) + gamma * attn: without the update (gamma 0) the output is the LayerNorm-ed pixels.
    with torch.no_grad():
        layer.gamma.zero_()
    plain, _ = layer(mask_features, multi_scale, text)
    normed = layer.pixel_norm(mask_features.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(mask_features.shape)
    assert torch.allclose(plain, normed, atol=1e-6)
    with torch.no_grad():
        layer.gamma.fill_(0.1)
    other, _ = layer(mask_features, multi_scale, torch.randn(5, 24))
    assert not torch.allclose(other, out_mask), "the update depends on the text"


def test_interaction_layer_scale_starts_at_0_1_and_gradients_reach_all_parameters():
    layer = TextPixelInteraction(pixel_dim=16, text_dim=24, embed_dim=32, num_heads=4)
    assert torch.equal(layer.gamma, torch.full((16,), 0.1))
    assert TextPixelInteraction(16, 24, 32, 4, use_layer_scale=False).gamma is None
    mask_features, multi_scale = _maps()
    text = torch.randn(3, 24, requires_grad=True)
    out_mask, out_scales = layer(mask_features, multi_scale, text)
    (out_mask.sum() + sum(x.square().sum() for x in out_scales)).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.parameters())
    assert text.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="NUM_HEADS"):
        TextPixelInteraction(16, 24, embed_dim=30, num_heads=4)


# ---------------------------------------------------------------------------------------------------- decoder
@pytest.mark.parametrize("layers", [3, 10])
def test_open_decoder_gives_query_embeddings_for_every_prediction(layers):
    args = dict(hidden_dim=16, num_queries=5, nheads=2, dim_feedforward=32, dec_layers=layers, mask_dim=16)
    decoder = OpenVocabMaskedTransformerDecoder(16, embedding_dim=24, embed_hidden_dim=40, embed_layers=2, **args)
    mask_features, multi_scale = _maps()
    out = decoder(multi_scale, mask_features)
    assert out["pred_logits"].shape == (2, 5, 24)
    assert len(out["aux_outputs"]) == layers, "DEC_LAYERS counts layers: FreeSeg's 10 give 10 auxiliary predictions"
    assert all(a["pred_logits"].shape == (2, 5, 24) for a in out["aux_outputs"])
    assert [tuple(layer.weight.shape) for layer in decoder.class_embed.layers] == [(40, 16), (24, 40)]
    plain = MultiScaleMaskedTransformerDecoder(16, num_classes=3, **args)
    assert isinstance(plain.class_embed, torch.nn.Linear), "the plain decoder keeps the official checkpoint keys"
    shared = {k for k in plain.state_dict() if not k.startswith("class_embed.")}
    assert shared == {k for k in decoder.state_dict() if not k.startswith("class_embed.")}


# --------------------------------------------------------------------------------------------------- ensemble
def test_ensemble_exponents_follow_the_seen_flag():
    mask_logits = torch.log(torch.tensor([[0.5, 0.2, 0.3]]))  # p_mask = [0.5, 0.2], no-object 0.3
    clip_logits = torch.log(torch.tensor([[0.1, 0.9]]))  # p_clip = [0.1, 0.9]
    valid = torch.tensor([True])
    lam = 0.8
    both_seen = ensemble_probabilities(mask_logits, clip_logits, valid, torch.tensor([True, True]), lam)
    expected = torch.tensor([[0.5**lam * 0.1 ** (1 - lam), 0.2**lam * 0.9 ** (1 - lam)]])
    assert torch.allclose(both_seen, expected)
    # Switching class 1 to unseen swaps its exponents only: p_mask^(1-l) * p_clip^l.
    switched = ensemble_probabilities(mask_logits, clip_logits, valid, torch.tensor([True, False]), lam)
    assert torch.allclose(switched[0, 0], expected[0, 0])
    assert torch.allclose(switched[0, 1], torch.tensor(0.2 ** (1 - lam) * 0.9**lam))
    assert switched[0, 1] > both_seen[0, 1], "an unseen class leans on CLIP, which likes class 1"


def test_ensemble_invalid_queries_use_p_clip_one_and_weight_is_checked():
    mask_logits = torch.log(torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]]))
    clip_logits = torch.tensor([[5.0, -5.0], [0.0, 0.0]])
    valid = torch.tensor([True, False])
    seen = torch.tensor([False, True])
    probs = ensemble_probabilities(mask_logits, clip_logits, valid, seen, 0.7)
    # Query 1 had an empty mask: p_clip = 1, so only the mask classifier's term is left.
    assert torch.allclose(probs[1], torch.tensor([0.2**0.3, 0.2**0.7]))
    p_clip = clip_logits[0].softmax(-1)
    assert torch.allclose(probs[0], torch.tensor([0.6**0.3 * p_clip[0] ** 0.7, 0.3**0.7 * p_clip[1] ** 0.3]))
    with pytest.raises(ValueError, match="CLIP_ENSEMBLE_WEIGHT"):
        ensemble_probabilities(mask_logits, clip_logits, valid, seen, 1.5)


def test_sharpen_is_a_softmax_at_temperature_0_01():
    probs = torch.tensor([[0.30, 0.29, 0.01]])
    sharp = sharpen(probs)
    assert torch.allclose(sharp, (probs / 0.01).softmax(-1))
    assert sharp[0, 0] > 0.7 and torch.allclose(sharp.sum(-1), torch.ones(1))


# ------------------------------------------------------------------------------------- post-processing entries
def test_probability_entry_points_reproduce_the_logit_ones():
    g = torch.Generator().manual_seed(3)
    mask_cls, mask_pred = torch.randn(6, 4, generator=g) * 3, torch.randn(6, 20, 24, generator=g) * 4
    probs = mask_cls.softmax(-1)
    assert torch.equal(semantic_inference(mask_cls, mask_pred), semantic_from_probs(probs[:, :-1], mask_pred))
    scores, labels = probs.max(-1)
    keep = labels.ne(3) & (scores > 0.2)
    seg_a, info_a = panoptic_inference(mask_cls, mask_pred, {0}, 0.2, 0.3)
    seg_b, info_b = panoptic_segments(scores, labels, keep, mask_pred, {0}, 0.3)
    assert torch.equal(seg_a, seg_b) and info_a == info_b
    a = instance_inference(mask_cls, mask_pred, 7, {1}, things_only=True)
    b = instance_from_probs(probs[:, :-1], mask_pred, 7, {1}, things_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
