"""The frozen open_clip wrapper: the embedding text path FreeSeg's prompts use, the image path, names refused."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from freemask.modeling.clip import TINY_CLIP_NAME, ClipError, build_clip
from freemask.modeling.clip.model import grid_position_embedding


def test_embedding_text_path_equals_open_clip_encode_text(tiny_clip):
    texts = ["a photo of a cat.", "semantic segmentation.", "a very long description of a traffic cone on a road"]
    ids = tiny_clip.tokenize(texts)
    assert ids.shape == (3, 77) and ids.dtype == torch.long
    ours = tiny_clip.encode_embedded_text(tiny_clip.embed_tokens(ids), tiny_clip.end_token_index(ids))
    reference = tiny_clip.model.encode_text(ids)  # open_clip: argmax pooling over the full 77-token context
    assert ours.shape == (3, tiny_clip.embed_dim)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(tiny_clip.encode_text(ids), reference, atol=1e-5, rtol=1e-5)


def test_end_token_index_decides_the_feature_and_gradients_reach_the_embeddings(tiny_clip):
    ids = tiny_clip.tokenize(["a photo of a dog."])
    embeds = tiny_clip.embed_tokens(ids).requires_grad_(True)
    end = tiny_clip.end_token_index(ids)
    at_end = tiny_clip.encode_embedded_text(embeds, end)
    before_end = tiny_clip.encode_embedded_text(embeds, end - 1)
    assert not torch.allclose(at_end, before_end)
    at_end.sum().backward()
    assert embeds.grad is not None and embeds.grad[0, : int(end) + 1].abs().sum() > 0
    assert embeds.grad[0, int(end) + 1 :].abs().sum() == 0  # causal: nothing after the end token matters
    assert all(p.grad is None for p in tiny_clip.parameters())


def test_frozen_and_always_in_eval_mode(tiny_clip):
    assert tiny_clip.width == 64 and tiny_clip.embed_dim == 64 and tiny_clip.image_size == 64
    assert tiny_clip.context_length == 77 and tiny_clip.sot_id == 49406 and tiny_clip.eot_id == 49407
    assert tiny_clip.pixel_mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    assert not any(p.requires_grad for p in tiny_clip.parameters())
    outer = torch.nn.Sequential(tiny_clip)
    outer.train()
    assert outer.training and not tiny_clip.training and not any(m.training for m in tiny_clip.modules())


def test_image_path_and_normalisation(tiny_clip):
    images = torch.rand(2, 3, 64, 64) * 255
    normalised = tiny_clip.normalize_image(images)
    mean = torch.tensor(tiny_clip.pixel_mean).view(1, 3, 1, 1) * 255
    std = torch.tensor(tiny_clip.pixel_std).view(1, 3, 1, 1) * 255
    torch.testing.assert_close(normalised, (images - mean) / std)
    features = tiny_clip.encode_image(normalised)
    torch.testing.assert_close(features, tiny_clip.model.encode_image(normalised))
    assert features.shape == (2, 64) and not features.requires_grad
    assert tiny_clip.resize_image(torch.rand(1, 3, 40, 40)).shape == (1, 3, 64, 64)


def test_a_non_square_crop_is_read_on_interpolated_position_embeddings(tiny_clip):
    """FreeSeg's stage-1 crops are 244 x 224 and its CLIP resizes the 14 x 14 position embeddings of ViT-B/16 to the
    15 x 14 patch grid (bytedance/FreeSeg, third_party/CLIP/clip/model.py, VisionTransformer.forward: bicubic,
    align_corners=True); the tiny CLIP's 4 x 4 grid becomes 5 x 4 for an 88 x 64 crop."""
    torch.manual_seed(0)
    crop = torch.randn(2, 3, 88, 64)  # 88 // 16 = 5 patch rows: the 8 extra pixels are dropped by the conv
    visual = copy.deepcopy(tiny_clip.model.visual)
    table = visual.positional_embedding.detach()
    grid = table[1:].t().reshape(1, -1, 4, 4)
    grid = F.interpolate(grid, size=(5, 4), mode="bicubic", align_corners=True).reshape(table.shape[1], 20).t()
    visual.positional_embedding = nn.Parameter(torch.cat([table[:1], grid]))
    with torch.no_grad():
        expected = visual(crop)
    features = tiny_clip.encode_image(crop)
    torch.testing.assert_close(features, expected)
    resized_first = tiny_clip.encode_image(tiny_clip.resize_image(crop))  # what stage 1 did before
    assert (features - resized_first).abs().max() > 1e-3
    assert torch.equal(grid_position_embedding(table, (4, 4)), table)  # the identity at CLIP's own grid


@pytest.mark.parametrize(
    "name, message",
    [
        ("ViT-B/16", "ViT-B-16-quickgelu"),  # FreeSeg's spelling: open_clip's name is suggested
        ("hf-hub:timm/ViT-B-16-SigLIP", "nothing is downloaded"),
        ("xlm-roberta-base-ViT-B-32", "would download"),
        ("no-such-clip", "not an open_clip architecture"),
    ],
)
def test_names_that_cannot_be_built_offline_are_refused(name, message):
    with pytest.raises(ClipError, match=message) as info:
        build_clip(name)
    assert "MODEL.CLIP_ADAPTER.CLIP_MODEL_NAME" in str(info.value) and "\n" not in str(info.value)


def test_tiny_clip_is_deterministic_per_seed():
    torch.manual_seed(3)
    a = build_clip(TINY_CLIP_NAME)
    torch.manual_seed(3)
    b = build_clip(TINY_CLIP_NAME)
    ids = a.tokenize(["grass"])
    torch.testing.assert_close(F.normalize(a.encode_text(ids)), F.normalize(b.encode_text(ids)))
