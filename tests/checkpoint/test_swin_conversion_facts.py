"""The Swin facts the conversion tables rest on, checked numerically rather than assumed.

1. timm's patch merging concatenates the 2x2 neighbours in the official Swin order, so official weights copy as is.
2. MMSegmentation merges with ``nn.Unfold``; its weights, reordered by ``UNFOLD_TO_OFFICIAL``, give timm's module the
   same output on the same input.
3. MMSegmentation's relative position index (its own formula) equals timm's, so bias tables copy as they are.
"""

import torch
import torch.nn.functional as F
from timm.models.swin_transformer import PatchMerging, WindowAttention

from freemask.checkpoint.convert.backbones import UNFOLD_TO_OFFICIAL

C = 8


def _random_merging(seed: int) -> PatchMerging:
    torch.manual_seed(seed)
    merging = PatchMerging(dim=C)
    with torch.no_grad():
        for p in merging.parameters():
            p.copy_(torch.randn_like(p))
    return merging.eval()


def test_timm_patch_merging_uses_the_official_neighbour_order():
    merging = _random_merging(0)
    x = torch.randn(2, 6, 10, C)  # (B, H, W, C)
    # official Swin: x0 = x[0::2, 0::2], x1 = x[1::2, 0::2], x2 = x[0::2, 1::2], x3 = x[1::2, 1::2], concatenated
    official = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
    expected = merging.reduction(merging.norm(official))
    with torch.no_grad():
        assert torch.allclose(merging(x), expected, atol=1e-6)


def test_mmseg_unfold_weights_reordered_give_the_same_merge():
    torch.manual_seed(1)
    norm_w, norm_b, reduction = torch.randn(4 * C), torch.randn(4 * C), torch.randn(2 * C, 4 * C)
    x = torch.randn(2, 6, 10, C)
    # mmseg PatchMerging: (B, C, H, W) -> unfold 2x2 / stride 2 -> (B, L, 4C) -> LayerNorm -> Linear (no bias)
    unfolded = F.unfold(x.permute(0, 3, 1, 2), kernel_size=2, stride=2).transpose(1, 2)
    mmseg_out = F.linear(F.layer_norm(unfolded, (4 * C,), norm_w, norm_b), reduction)

    merging = _random_merging(2)
    with torch.no_grad():
        merging.norm.weight.copy_(UNFOLD_TO_OFFICIAL.forward(norm_w))
        merging.norm.bias.copy_(UNFOLD_TO_OFFICIAL.forward(norm_b))
        merging.reduction.weight.copy_(UNFOLD_TO_OFFICIAL.forward(reduction))
        ours = merging(x).flatten(1, 2)
    assert torch.allclose(ours, mmseg_out, atol=1e-5)
    for w in (norm_w, reduction):
        assert torch.equal(UNFOLD_TO_OFFICIAL.inverse(UNFOLD_TO_OFFICIAL.forward(w)), w)
        assert not torch.equal(UNFOLD_TO_OFFICIAL.forward(w), w)


def test_mmseg_relative_position_index_equals_timm():
    window = 7
    # mmseg WindowMSA: double_step_seq(2 * Ww - 1, Wh, 1, Ww), plus its transpose, flipped along dim 1
    rows = torch.arange(0, (2 * window - 1) * window, 2 * window - 1)
    coords = (rows[:, None] + torch.arange(window)[None, :]).reshape(1, -1)
    mmseg_index = (coords + coords.T).flip(1)
    timm_index = WindowAttention(dim=C, num_heads=2, window_size=window).relative_position_index
    assert torch.equal(mmseg_index, timm_index)
