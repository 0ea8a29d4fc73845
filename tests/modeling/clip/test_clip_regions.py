"""Region classification on hand-made masks: the box, the fill outside the mask, empty masks, the logits."""

import pytest
import torch
import torch.nn.functional as F

from freemask.config import ConfigError, get_cfg
from freemask.modeling.clip import RegionClassifier, crop_regions, region_logits
from freemask.modeling.clip.regions import mask_box


def _unnormalise(clip, crop):
    mean = torch.tensor(clip.pixel_mean).view(3, 1, 1) * 255
    std = torch.tensor(clip.pixel_std).view(3, 1, 1) * 255
    return crop * std + mean


def _image_and_mask():
    image = torch.arange(3 * 8 * 8, dtype=torch.float32).view(3, 8, 8)
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[2:5, 3:6] = True  # a 3 x 3 box: rows 2..4, columns 3..5
    mask[3, 4] = False  # a hole, inside the box but outside the mask
    return image, mask


@pytest.mark.parametrize("fill", ["mean", "zero"])
def test_crop_is_the_box_with_the_outside_filled(tiny_clip, fill):
    image, mask = _image_and_mask()
    assert mask_box(mask) == (3, 2, 6, 5)
    crop = crop_regions(tiny_clip, image, mask[None], fill=fill, size=3)  # same size: the resize keeps pixels
    assert crop.shape == (1, 3, 3, 3)
    pixels = _unnormalise(tiny_clip, crop[0])
    expected = image[:, 2:5, 3:6].clone()
    expected[:, 1, 1] = torch.tensor(tiny_clip.pixel_mean) * 255 if fill == "mean" else 0.0
    torch.testing.assert_close(pixels, expected, atol=1e-3, rtol=0)


def test_box_expansion_about_the_centre_is_clipped_to_the_image():
    _, mask = _image_and_mask()
    assert mask_box(mask, expand_ratio=2.0) == (1, 0, 7, 6)  # 3 x 3 around (4.5, 3.5) grown to 6 x 6
    assert mask_box(mask, expand_ratio=4.0) == (0, 0, 8, 8)


def test_region_logits_score_valid_masks_and_flag_empty_ones(tiny_clip):
    torch.manual_seed(0)
    image = torch.rand(3, 96, 80) * 255
    probs = torch.zeros(3, 96, 80)
    probs[0, 10:50, 20:60] = 0.9
    probs[1] = 0.5  # never above the threshold 0.5: empty
    probs[2, 60:90, 5:30] = 0.7
    text = F.normalize(torch.randn(4, 64), dim=-1)
    logits, valid = region_logits(tiny_clip, image, probs, text, mask_threshold=0.5, size=64)
    assert valid.tolist() == [True, False, True]
    assert logits.shape == (3, 4) and torch.equal(logits[1], torch.zeros(4))
    crops = crop_regions(tiny_clip, image, probs[[0, 2]] > 0.5, size=64)
    expected = 100 * F.normalize(tiny_clip.encode_image(crops), dim=-1) @ text.t()
    torch.testing.assert_close(logits[valid], expected)
    assert logits[valid].abs().max() <= 100 + 1e-4
    none_valid, flags = region_logits(tiny_clip, image, torch.zeros(2, 96, 80), text, size=64)
    assert not flags.any() and torch.equal(none_valid, torch.zeros(2, 4))


def test_region_settings_from_config(tiny_clip):
    cfg = get_cfg()
    cfg.MODEL.CLIP_ADAPTER.REGION_SIZE = 64
    cfg.MODEL.CLIP_ADAPTER.MASK_FILL = "zero"
    classifier = RegionClassifier.from_config(cfg)
    assert classifier == RegionClassifier(0.5, "zero", 1.0, 64)
    probs = torch.zeros(1, 64, 64)
    probs[0, :32] = 1.0
    logits, valid = classifier(tiny_clip, torch.rand(3, 64, 64) * 255, probs, F.normalize(torch.randn(2, 64), dim=-1))
    assert valid.all() and logits.shape == (1, 2)
    with pytest.raises(ConfigError, match="MASK_FILL"):
        RegionClassifier(fill="blur")
    with pytest.raises(ConfigError, match="REGION_SIZE 224 differs from the input size 64"):
        RegionClassifier()(tiny_clip, torch.rand(3, 64, 64), probs, torch.randn(2, 64))
