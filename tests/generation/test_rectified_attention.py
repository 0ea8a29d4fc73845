"""Rectified cross-attention: which token sees which pixel at two resolutions, FreestyleNet's formula, CFG halves."""

import pytest
import torch

from freemask.generation.rectified_attention import (
    RectificationLayout,
    RectifiedCrossAttnProcessor,
    install_rectified_attention,
    level_size,
)

IGNORE = 255


def _layout():
    """8x8 labels: left half class 3, right half class 5, bottom-right 2x2 corner ignored; caption tokens:
    start, class 3 (one token), class 5 (two tokens), end, padding."""
    labels = torch.full((1, 8, 8), 3, dtype=torch.long)
    labels[:, :, 4:] = 5
    labels[:, 6:, 6:] = IGNORE
    tokens = torch.tensor([[-1, 3, 5, 5, -1, -1, -1, -1]])
    layout = RectificationLayout()
    layout.set(labels, tokens, (8, 8))
    return layout


def test_level_size_square_non_square_and_odd():
    assert [level_size((8, 8), n) for n in (64, 16, 4)] == [(8, 8), (4, 4), (2, 2)]
    assert level_size((8, 12), 96) == (8, 12) and level_size((8, 12), 24) == (4, 6)
    assert level_size((5, 7), 12) == (3, 4)  # stride-2 convolutions round up
    with pytest.raises(ValueError, match="no UNet level"):
        level_size((8, 8), 10)


@pytest.mark.parametrize("length,side", [(64, 8), (16, 4)])
def test_each_token_sees_only_its_class_pixels(length, side):
    allowed = _layout().allowed(length, torch.device("cpu"))[0, 0].reshape(side, side, 8)
    scale = 8 // side
    for r in range(side):
        for c in range(side):
            label = 3 if c * scale < 4 else 5
            if r * scale >= 6 and c * scale >= 6:
                label = IGNORE
            seen = allowed[r, c].tolist()
            assert seen[0] and seen[4:] == [True] * 4, "start/end/padding tokens are open to every pixel"
            assert seen[1] == (label == 3) and seen[2] == seen[3] == (label == 5)
    if side == 8:  # the ignored corner sees only the open tokens
        assert allowed[7, 7].tolist() == [True, False, False, False, True, True, True, True]


def test_guidance_batch_leaves_the_unconditional_half_open():
    layout = _layout()
    mask = layout.mask_for(2, 64, torch.device("cpu"))
    assert mask.shape == (2, 1, 64, 8) and mask[0].all() and not mask[1].all()
    assert torch.equal(mask[1], layout.allowed(64, torch.device("cpu"))[0])
    with pytest.raises(ValueError, match="UNet batch of 3 for 1 layouts"):
        layout.mask_for(3, 64, torch.device("cpu"))


@pytest.fixture(scope="module")
def attention():
    from diffusers.models.attention_processor import Attention

    torch.manual_seed(0)
    return Attention(query_dim=16, cross_attention_dim=12, heads=2, dim_head=8).eval()


def _freestylenet_reference(attn, x, context, allowed):
    """FreestyleNet's CrossAttention: scores filled with -finfo.max where the mask is False, then softmax."""
    q, k, v = attn.to_q(x), attn.to_k(context), attn.to_v(context)
    b, n, _ = q.shape
    q, k, v = (t.reshape(b, -1, attn.heads, 8).transpose(1, 2) for t in (q, k, v))
    scores = q @ k.transpose(-1, -2) * 8**-0.5
    scores = scores.masked_fill(~allowed, -torch.finfo(scores.dtype).max)
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, -1)
    return attn.to_out[0](out)


def test_processor_matches_freestylenet_formula_per_sample(attention):
    labels = torch.randint(0, 3, (2, 8, 8))
    tokens = torch.tensor([[-1, 0, 1, -1, -1, -1], [-1, 2, 2, 0, -1, -1]])
    layout = RectificationLayout()
    layout.set(labels, tokens, (8, 8))
    processor = RectifiedCrossAttnProcessor(layout)
    x, context = torch.randn(4, 64, 16), torch.randn(4, 6, 12)  # guidance batch: 2 unconditional, 2 conditional
    with torch.no_grad():
        out = processor(attention, x, context)
        full = layout.mask_for(4, 64, torch.device("cpu"))
        reference = _freestylenet_reference(attention, x, context, full)
        torch.testing.assert_close(out, reference, rtol=0, atol=1e-6)
        layout_one = RectificationLayout()
        layout_one.set(labels[1:], tokens[1:], (8, 8))
        alone = RectifiedCrossAttnProcessor(layout_one)(attention, x[[1, 3]], context[[1, 3]])
        torch.testing.assert_close(out[[1, 3]], alone, rtol=0, atol=1e-6)  # no dependence on the other sample
        layout.clear()
        plain = processor(attention, x, context)
        from diffusers.models.attention_processor import AttnProcessor2_0

        torch.testing.assert_close(plain, AttnProcessor2_0()(attention, x, context), rtol=0, atol=1e-6)
    assert not torch.allclose(out[2:], plain[2:], atol=1e-4) and torch.allclose(out[:2], plain[:2], atol=1e-6)


def test_install_on_every_cross_attention_layer():
    from freemask.generation.tiny import tiny_pipeline

    unet = tiny_pipeline().unet
    layout = RectificationLayout()
    assert install_rectified_attention(unet, layout) == 11
    kinds = {name: type(p).__name__ for name, p in unet.attn_processors.items()}
    assert all((k == "RectifiedCrossAttnProcessor") == n.endswith("attn2.processor") for n, k in kinds.items())
    assert len(kinds) == 22
