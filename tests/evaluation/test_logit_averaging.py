"""Where the softmax sits at test time: MMSegmentation averages a per-pixel classifier's LOGITS over overlapping
sliding windows, resizes the logits to the original image, and only then takes the softmax; multi-scale + flip
averages those softmax probabilities. A model without logits (Mask2Former) has its scores averaged as they are.

The references below are written from that description (MMSegmentation's ``slide_inference``, ``inference`` and
``aug_test``), independently of ``SegmentationInference``.
"""

from typing import Callable, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from freemask.modeling.inference import SegmentationInference
from freemask.modeling.meta_arch.base import SemanticSegmentor
from freemask.modeling.meta_arch.encoder_decoder import EncoderDecoder

NUM_CLASSES = 5


class _StridedBackbone(nn.Module):
    """A 3x3 stride-4 convolution with zero padding: window borders change the features, so overlapping windows
    disagree and the order of averaging and softmax matters."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=4, padding=1)

    def forward(self, images: torch.Tensor) -> dict:
        return {"res2": self.conv(images)}


class _Head(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(8, NUM_CLASSES, 3, padding=1)

    def forward(self, features: dict) -> torch.Tensor:
        return 3.0 * self.conv(features["res2"])  # sharp logits: softmax far from linear


def encoder_decoder(inference: SegmentationInference) -> EncoderDecoder:
    torch.manual_seed(0)
    model = EncoderDecoder(
        backbone=_StridedBackbone(), sem_seg_head=_Head(), pixel_mean=[0.0] * 3, pixel_std=[1.0] * 3,
        size_divisibility=0, ignore_label=255, inference=inference,
    )  # fmt: skip
    return model.eval()


def head_logits(model: EncoderDecoder) -> Callable[[torch.Tensor], torch.Tensor]:
    """The model's logits at its input's resolution, from its parts (MMSegmentation's encode_decode)."""

    def logits(x: torch.Tensor) -> torch.Tensor:
        out = model.sem_seg_head(model.backbone(x))
        return F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)

    return logits


def reference_slide(logits, image: torch.Tensor, crop: Tuple[int, int], stride: Tuple[int, int]) -> torch.Tensor:
    """Logits of the windows summed where they lie, divided by the count; windows end at the image border."""
    _, _, height, width = image.shape
    total = 0.0
    count = torch.zeros(1, 1, height, width)
    rows = max(height - crop[0] + stride[0] - 1, 0) // stride[0] + 1
    cols = max(width - crop[1] + stride[1] - 1, 0) // stride[1] + 1
    for r in range(rows):
        for c in range(cols):
            y2, x2 = min(r * stride[0] + crop[0], height), min(c * stride[1] + crop[1], width)
            y1, x1 = max(y2 - crop[0], 0), max(x2 - crop[1], 0)
            window = logits(image[..., y1:y2, x1:x2])
            total = total + F.pad(window, (x1, width - x2, y1, height - y2))
            count[..., y1:y2, x1:x2] += 1
    return total / count


def resize(x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def run(model: SemanticSegmentor, image: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    with torch.no_grad():
        return model([{"image": image[0], "height": size[0], "width": size[1]}])[0]["sem_seg"]


def test_sliding_windows_average_logits_then_resize_then_softmax():
    crop, stride = (24, 24), (16, 16)
    model = encoder_decoder(SegmentationInference("slide", crop_size=crop, stride=stride))
    image = torch.randn(1, 3, 40, 56, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = resize(reference_slide(head_logits(model), image, crop, stride), (50, 70)).softmax(1)[0]
        averaged_probs = resize(
            reference_slide(lambda x: head_logits(model)(x).softmax(1), image, crop, stride), (50, 70)
        )[0]
    got = run(model, image, (50, 70))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # The two orders differ by far more than the tolerance, so the check above tells them apart.
    assert (averaged_probs - expected).abs().max() > 1e-2


def test_whole_image_resizes_logits_before_the_softmax():
    model = encoder_decoder(SegmentationInference("whole"))
    image = torch.randn(1, 3, 24, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits = head_logits(model)(image)
    expected = resize(logits, (61, 83)).softmax(1)[0]
    torch.testing.assert_close(run(model, image, (61, 83)), expected, atol=1e-5, rtol=1e-5)
    assert (resize(logits.softmax(1), (61, 83))[0] - expected).abs().max() > 1e-3


def test_multi_scale_and_flip_average_softmax_probabilities():
    ratios = (0.75, 1.25)
    model = encoder_decoder(SegmentationInference("whole", ratios=ratios, flip=True))
    image = torch.randn(1, 3, 32, 40, generator=torch.Generator().manual_seed(3))
    views = []
    with torch.no_grad():
        for ratio in ratios:
            scaled = resize(image, (int(32 * ratio + 0.5), int(40 * ratio + 0.5)))
            views.append(resize(head_logits(model)(scaled), (32, 40)).softmax(1))
            views.append(resize(head_logits(model)(scaled.flip(-1)).flip(-1), (32, 40)).softmax(1))
    expected = torch.stack(views).mean(0)[0]
    torch.testing.assert_close(run(model, image, (32, 40)), expected, atol=1e-5, rtol=1e-5)


class _ScoresOnly(SemanticSegmentor):
    """A model with scores and no logits (as Mask2Former): its window scores are averaged as they are."""

    def __init__(self, inference: SegmentationInference) -> None:
        super().__init__(
            pixel_mean=[0.0] * 3, pixel_std=[1.0] * 3, size_divisibility=0, ignore_label=255, inference=inference
        )

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return images[:, :2].sigmoid() + images.mean(dim=(-2, -1), keepdim=True)[:, :2]


def test_a_model_without_logits_has_its_scores_averaged_unchanged():
    crop, stride = (16, 16), (8, 8)
    model = _ScoresOnly(SegmentationInference("slide", crop_size=crop, stride=stride)).eval()
    image = torch.randn(1, 3, 20, 28, generator=torch.Generator().manual_seed(4))
    expected = reference_slide(model.predict, image, crop, stride)[0]
    torch.testing.assert_close(run(model, image, (20, 28)), expected)
