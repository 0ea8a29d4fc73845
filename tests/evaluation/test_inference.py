"""SegmentationInference modes agree with each other where they must, and the evaluation loop drives a model."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from freemask.config import get_cfg
from freemask.evaluation import SemSegEvaluator, inference_on_dataset
from freemask.modeling.inference import SegmentationInference, sliding_windows

NUM_CLASSES = 4


def pixelwise_predict():
    """A fixed 1x1 convolution + softmax: each output pixel depends only on the same input pixel."""
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(NUM_CLASSES, 3, 1, 1, generator=g)
    bias = torch.randn(NUM_CLASSES, generator=g)
    calls = []

    def predict(x):
        calls.append(tuple(x.shape))
        return F.conv2d(x, weight, bias).softmax(dim=1)

    predict.calls = calls
    return predict


def image(h, w, seed=1):
    return torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_whole_returns_scores_at_output_size():
    predict = pixelwise_predict()
    out = SegmentationInference("whole")(predict, image(20, 30), (40, 61))
    assert out.shape == (NUM_CLASSES, 40, 61)
    assert torch.allclose(out.sum(0), torch.ones(40, 61), atol=1e-5)  # bilinear resize of probabilities


def test_size_divisibility_pads_input_but_not_result():
    predict = pixelwise_predict()
    x = image(20, 30)
    plain = SegmentationInference("whole", size_divisibility=0)(predict, x, (20, 30))
    padded = SegmentationInference("whole", size_divisibility=16)(predict, x, (20, 30))
    assert predict.calls == [(1, 3, 20, 30), (1, 3, 32, 32)]
    assert torch.allclose(plain, padded, atol=1e-6)
    assert torch.allclose(plain, predict(x)[0], atol=1e-6)


def test_sliding_window_grid_is_mmsegmentation_style():
    # 10 px, crop 4, stride 3: ceil((10-4)/3)+1 = 3 windows, the last one flush with the border.
    assert sliding_windows(10, 4, (4, 4), (3, 3)) == [(0, 0, 4, 4), (3, 0, 7, 4), (6, 0, 10, 4)]
    assert sliding_windows(11, 4, (4, 4), (3, 3))[-1] == (7, 0, 11, 4)
    assert sliding_windows(3, 2, (4, 4), (3, 3)) == [(0, 0, 3, 2)]


def test_slide_with_crop_covering_image_equals_whole():
    predict = pixelwise_predict()
    x = image(20, 30)
    whole = SegmentationInference("whole")(predict, x, (25, 33))
    slide = SegmentationInference("slide", crop_size=(32, 32), stride=(16, 16))(predict, x, (25, 33))
    assert torch.allclose(slide, whole, atol=1e-6)


def test_slide_with_overlapping_windows_equals_whole():
    predict = pixelwise_predict()
    x = image(37, 53)
    whole = SegmentationInference("whole")(predict, x, (37, 53))
    inference = SegmentationInference("slide", crop_size=(16, 20), stride=(10, 13), window_batch_size=5)
    slide = inference(predict, x, (37, 53))
    assert torch.allclose(slide, whole, atol=1e-5)
    windows = len(sliding_windows(37, 53, (16, 20), (10, 13)))
    assert windows == 4 * 4
    # Windows of equal size are predicted in batches (of at most window_batch_size).
    assert predict.calls[1:] == [(5, 3, 16, 20)] * 3 + [(1, 3, 16, 20)]


def test_slide_on_image_smaller_than_crop_is_one_window_of_its_own_size():
    """MMSegmentation's slide_inference cuts windows at the image border; padding to the crop would change what a
    model with global context (here: each pixel minus the window's mean) predicts."""
    calls = []

    def predict(x):
        calls.append(tuple(x.shape))
        return x - x.mean(dim=(-2, -1), keepdim=True)

    x = image(10, 12)
    out = SegmentationInference("slide", crop_size=(16, 16), stride=(8, 8))(predict, x, (10, 12))
    assert calls == [(1, 3, 10, 12)]
    torch.testing.assert_close(out, predict(x)[0])
    # Smaller than the crop on one axis only: windows keep the crop on the other, all of one size.
    calls.clear()
    SegmentationInference("slide", crop_size=(16, 16), stride=(8, 8))(predict, image(10, 40), (10, 40))
    assert calls == [(4, 3, 10, 16)]


def test_single_ratio_without_flip_equals_whole():
    predict = pixelwise_predict()
    x = image(20, 30)
    whole = SegmentationInference("whole")(predict, x, (31, 47))
    assert torch.equal(SegmentationInference("whole", ratios=(1.0,), flip=False)(predict, x, (31, 47)), whole)


def test_flip_with_pixelwise_predict_equals_no_flip():
    predict = pixelwise_predict()
    x = image(20, 30)
    for mode in ("whole", "slide"):
        kwargs = {"crop_size": (8, 8), "stride": (5, 5)}
        plain = SegmentationInference(mode, **kwargs)(predict, x, (20, 30))
        flipped = SegmentationInference(mode, flip=True, **kwargs)(predict, x, (20, 30))
        assert torch.allclose(plain, flipped, atol=1e-6)


def test_flip_really_predicts_on_the_flipped_image():
    """With a position-dependent predict, flip averaging is the mean of the two orientations."""

    def predict(x):
        ramp = torch.arange(x.shape[-1], dtype=torch.float32).expand(x.shape[0], 1, x.shape[-2], -1)
        return torch.cat([ramp, -ramp], dim=1)

    out = SegmentationInference("whole", flip=True)(predict, image(4, 5), (4, 5))
    assert torch.allclose(out, torch.full((2, 4, 5), 0.0) + torch.tensor([2.0, -2.0]).view(2, 1, 1))


def test_multi_scale_shapes_and_scaled_inputs():
    predict = pixelwise_predict()
    inference = SegmentationInference("whole", ratios=(0.5, 1.0, 1.5), flip=True, size_divisibility=8)
    out = inference(predict, image(20, 30), (41, 59))
    assert out.shape == (NUM_CLASSES, 41, 59)
    # 0.5 -> 10x15 padded to 16x16, 1.0 -> 24x32, 1.5 -> 30x45 padded to 32x48; each with and without flip.
    assert predict.calls == [(1, 3, 16, 16)] * 2 + [(1, 3, 24, 32)] * 2 + [(1, 3, 32, 48)] * 2
    assert torch.allclose(out.sum(0), torch.ones(41, 59), atol=1e-5)
    slide = SegmentationInference("slide", crop_size=(16, 16), stride=(12, 12), ratios=(0.75, 1.25))
    assert slide(predict, image(20, 30), (20, 30)).shape == (NUM_CLASSES, 20, 30)


def test_from_config_and_bad_values():
    cfg = get_cfg()
    cfg.TEST.SLIDING_WINDOW.ENABLED = True
    cfg.TEST.SLIDING_WINDOW.CROP_SIZE = [128, 96]
    cfg.TEST.SLIDING_WINDOW.STRIDE = [85, 64]
    cfg.INPUT.SIZE_DIVISIBILITY = 512  # the training crop's pad, not the test's
    cfg.TEST.SIZE_DIVISIBILITY = 16
    inference = SegmentationInference.from_config(cfg)
    assert (inference.mode, inference.crop_size, inference.stride) == ("slide", (128, 96), (85, 64))
    assert (inference.ratios, inference.flip, inference.size_divisibility) == ((1.0,), False, 16)
    cfg.TEST.AUG.ENABLED = True
    inference = SegmentationInference.from_config(cfg)
    assert inference.ratios == tuple(cfg.TEST.AUG.RATIOS) and inference.flip is True
    with pytest.raises(ValueError, match="TEST.SLIDING_WINDOW.STRIDE"):
        SegmentationInference("slide", crop_size=(8, 8), stride=(9, 8))
    with pytest.raises(ValueError, match="TEST.AUG.RATIOS"):
        SegmentationInference(ratios=())
    with pytest.raises(ValueError, match="at its input's resolution"):
        SegmentationInference()(lambda x: x[:, :, ::2, ::2], image(8, 8), (8, 8))


class FixedModel(nn.Module):
    """Returns one-hot scores of stored predictions; records the mode and grad state it ran in."""

    def __init__(self, preds):
        super().__init__()
        self.preds = preds
        self.seen = []

    def forward(self, inputs):
        self.seen.append((self.training, torch.is_grad_enabled()))
        return [{"sem_seg": F.one_hot(self.preds[x["index"]], 2).permute(2, 0, 1).float()} for x in inputs]


def test_inference_on_dataset_runs_eval_no_grad_and_restores_mode():
    gts = [torch.tensor([[0, 1], [1, 1]]), torch.tensor([[0, 0, 1]])]
    preds = [torch.tensor([[0, 1], [0, 1]]), torch.tensor([[0, 0, 1]])]
    loader = [[{"index": i, "sem_seg": gt}] for i, gt in enumerate(gts)]
    model = FixedModel(preds).train()
    evaluator = SemSegEvaluator(2, 255, ["a", "b"])
    evaluator.process([{"sem_seg": torch.zeros(1, 1, dtype=torch.int64)}], [{"sem_seg": torch.ones(2, 1, 1)}])
    results = inference_on_dataset(model, loader, evaluator, log_period=1)
    assert model.training and model.seen == [(False, False), (False, False)]
    # Stale state was reset; pixels (gt, pred): a: 3 of 3 right, b: 3 of 4 right (one predicted a).
    assert results["sem_seg"]["pACC"] == pytest.approx(600 / 7)
    assert results["sem_seg"]["IoU-a"] == pytest.approx(75.0) and results["sem_seg"]["IoU-b"] == pytest.approx(75.0)


def convolutional_predict():
    """A 3x3 convolution: each pixel depends on its neighbours, so padding and windows change it."""
    weight = torch.randn(NUM_CLASSES, 3, 3, 3, generator=torch.Generator().manual_seed(2))
    return lambda x: F.conv2d(x, weight, padding=1)


@pytest.mark.parametrize(
    "inference",
    [
        SegmentationInference("whole", size_divisibility=16),
        SegmentationInference("slide", crop_size=(16, 16), stride=(11, 11), size_divisibility=8),
        SegmentationInference("whole", ratios=(0.5, 1.25), flip=True, size_divisibility=4),
    ],
    ids=["whole-padded", "slide", "multi-scale-flip"],
)
def test_batched_images_get_the_scores_they_get_alone(inference):
    """Images of one size share their forwards but not their numbers: each gets the scores of a batch of one,
    at its own output size."""
    predict = convolutional_predict()
    images = torch.cat([image(21, 35, seed=s) for s in (1, 2, 3)])
    sizes = [(42, 70), (21, 35), (30, 50)]
    batched = inference.batch(predict, images, sizes, activation=lambda x: x.softmax(1))
    for one, size, scores in zip(images, sizes, batched):
        alone = inference(predict, one[None], size, activation=lambda x: x.softmax(1))
        assert scores.shape == (NUM_CLASSES, *size)
        assert torch.allclose(scores, alone, atol=1e-6)


def test_model_evaluates_a_mixed_size_batch_as_single_images():
    """A test batch of several images (TEST.IMS_PER_BATCH > 1), two of one size and one of another, gives every
    image the scores it gets in a batch of one; an ``inference`` passed to the call is used for that call only."""
    from freemask.modeling.meta_arch.encoder_decoder import EncoderDecoder

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, NUM_CLASSES, 3, padding=1)

        def forward(self, x):
            return self.conv(x)

    class Backbone(nn.Module):
        def forward(self, x):
            return x

    torch.manual_seed(0)
    model = EncoderDecoder(
        backbone=Backbone(), sem_seg_head=Head(), pixel_mean=[127.0] * 3, pixel_std=[64.0] * 3, size_divisibility=0,
        ignore_label=255, inference=SegmentationInference("whole", size_divisibility=8),
    ).eval()  # fmt: skip
    inputs = [
        {"image": (torch.rand(3, h, w, generator=torch.Generator().manual_seed(s)) * 255), "height": oh, "width": ow}
        for s, (h, w, oh, ow) in enumerate([(20, 28, 40, 56), (13, 17, 13, 17), (20, 28, 20, 28)])
    ]
    with torch.no_grad():
        batched = model(inputs)
        alone = [model([x])[0] for x in inputs]
        flipped = SegmentationInference("whole", ratios=(1.0,), flip=True)
        with_aug = model(inputs, inference=flipped)
        aug_alone = model(inputs[:1], inference=flipped)
    for got, want in zip(batched, alone):
        assert torch.allclose(got["sem_seg"], want["sem_seg"], atol=1e-6)
    assert model.inference.flip is False  # the call's inference was not left on the model
    assert torch.allclose(with_aug[0]["sem_seg"], aug_alone[0]["sem_seg"], atol=1e-6)
    assert not torch.allclose(with_aug[0]["sem_seg"], batched[0]["sem_seg"], atol=1e-4)
