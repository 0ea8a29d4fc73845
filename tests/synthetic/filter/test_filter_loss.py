"""Pass 1 of the filter: per-pixel cross-entropy and class-wise mean losses, against brute force."""

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from freemask.config import ConfigError, get_cfg
from freemask.modeling.inference import SegmentationInference
from freemask.modeling.meta_arch.base import SemanticSegmentor
from freemask.synthetic.filter.batches import plan_batches
from freemask.synthetic.filter.loss import LOSS_SCALE, ClassLossAccumulator, label_nll
from freemask.synthetic.filter.options import FilterOptions
from freemask.synthetic.filter.run import SyntheticFilter
from freemask.synthetic.sources import SourceSpec

IGNORE = 255
K = 4


def test_label_nll_equals_torch_cross_entropy_and_is_zero_at_ignored_pixels():
    torch.manual_seed(0)
    logits = torch.randn(2, K, 5, 6)
    labels = torch.randint(0, K, (2, 5, 6))
    labels[0, :2] = IGNORE
    got = label_nll(logits.log_softmax(1), labels, IGNORE)
    expected = F.cross_entropy(logits, labels, ignore_index=IGNORE, reduction="none")
    torch.testing.assert_close(got, expected)
    assert (got[0, :2] == 0).all()


def random_batches(seed, n=5):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        shape = tuple(rng.integers(3, 9, size=2))
        labels = rng.choice([0, 1, 2, IGNORE], size=shape)  # class 3 never appears
        out.append((torch.from_numpy(rng.exponential(0.7, size=shape)).float(), torch.from_numpy(labels)))
    return out


def test_class_means_equal_a_float64_brute_force_and_absent_classes_have_none():
    batches = random_batches(0)
    accumulator = ClassLossAccumulator(K)
    for loss, labels in batches:
        accumulator.add(loss, labels, IGNORE)
    stats = accumulator.to_class_loss("toy", ["a", "b", "c", "d"], IGNORE)
    for c in range(3):
        values = [float(v) for loss, labels in batches for v in loss[labels == c].double()]
        assert stats.pixels[c] == len(values)
        assert stats.mean_loss[c] == pytest.approx(sum(values) / len(values), abs=1.0 / LOSS_SCALE)
    assert stats.pixels[3] == 0 and stats.mean_loss[3] is None


def test_sums_are_bit_identical_whatever_the_order_or_split_of_the_batches():
    batches = random_batches(1, n=8)
    forward, backward, halves = ClassLossAccumulator(K), ClassLossAccumulator(K), ClassLossAccumulator(K)
    for loss, labels in batches:
        forward.add(loss, labels, IGNORE)
    for loss, labels in reversed(batches):
        backward.add(loss, labels, IGNORE)
    first, second = ClassLossAccumulator(K), ClassLossAccumulator(K)
    for i, (loss, labels) in enumerate(batches):
        (first if i % 2 else second).add(loss, labels, IGNORE)
    halves.sums, halves.counts = first.sums + second.sums, first.counts + second.counts  # what all_reduce does
    for other in (backward, halves):
        assert torch.equal(forward.sums, other.sums) and torch.equal(forward.counts, other.counts)


def test_a_label_outside_the_model_classes_is_refused():
    with pytest.raises(ValueError, match="outside"):
        ClassLossAccumulator(K).add(torch.ones(2), torch.tensor([0, K]), IGNORE)


class PixelwiseModel(SemanticSegmentor):
    """A 1x1-conv classifier: each pixel's scores depend on that pixel only, so padding a batch cannot change them
    and pass 1 must equal a per-image brute force exactly."""

    def __init__(self, input_format: str = "RGB") -> None:
        mean, std = [120.0, 110.0, 100.0], [60.0, 55.0, 50.0]
        bgr = input_format == "BGR"
        super().__init__(
            pixel_mean=mean[::-1] if bgr else mean, pixel_std=std[::-1] if bgr else std, size_divisibility=8,
            ignore_label=IGNORE, inference=SegmentationInference(), input_format=input_format,
        )  # fmt: skip
        torch.manual_seed(0)
        self.classifier = torch.nn.Conv2d(3, K, 1)
        if bgr:  # the same classifier on channels in the other order
            self.classifier.weight.data = self.classifier.weight.data.flip(1)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(images).softmax(1)


def test_preprocess_pads_to_the_test_time_divisor_and_flips_rgb_input_for_a_bgr_model():
    images = [torch.randint(0, 256, (3, 5, 7), dtype=torch.uint8), torch.randint(0, 256, (3, 9, 4), dtype=torch.uint8)]
    rgb, bgr = PixelwiseModel(), PixelwiseModel("BGR")
    rgb.inference = SegmentationInference(size_divisibility=4)
    batch = rgb.preprocess(images)
    assert batch.shape == (2, 3, 12, 8)  # 9 x 7 rounded up to 4, not to the training divisor 8
    expected = (images[1].float() - rgb.pixel_mean) / rgb.pixel_std
    torch.testing.assert_close(batch[1, :, :9, :4], expected, rtol=0, atol=0)
    assert (batch[1, :, 9:] == 0).all() and (batch[1, :, :, 4:] == 0).all()
    assert rgb.preprocess(images, size_divisibility=8).shape == (2, 3, 16, 8)
    flipped = bgr.preprocess(images)
    assert flipped.shape == (2, 3, 9, 7)  # test-time divisor 0: the largest size
    torch.testing.assert_close(flipped[0, :, :5], ((images[0].flip(0).float() - bgr.pixel_mean) / bgr.pixel_std))
    # the forward path's images come from the mapper already in the model's order: no flip there
    assert torch.equal(bgr._normalize(images[0]), (images[0].float() - bgr.pixel_mean) / bgr.pixel_std)


def test_input_format_comes_from_the_config_and_must_be_rgb_or_bgr():
    cfg = get_cfg()
    cfg.INPUT.FORMAT = "BGR"
    assert SemanticSegmentor.base_config(cfg)["input_format"] == "BGR"
    with pytest.raises(ConfigError, match="INPUT.FORMAT must be RGB or BGR"):
        PixelwiseModel("YUV")


def test_a_bgr_model_scores_the_rgb_pairs_as_its_rgb_twin(tmp_path):
    """The reader decodes RGB; a model trained on BGR (its mean, std and weights in BGR order) must see BGR."""
    sizes = [(20, 30), (17, 23)]
    source = write_pairs(tmp_path, sizes)
    rgb, bgr = pass1(PixelwiseModel().eval(), source, tmp_path), pass1(PixelwiseModel("BGR").eval(), source, tmp_path)
    assert rgb.pixels == bgr.pixels
    present = [k for k, loss in enumerate(rgb.mean_loss) if loss is not None]  # class 3 never occurs: None
    assert present == [k for k, loss in enumerate(bgr.mean_loss) if loss is not None] == [0, 1, 2]
    assert [bgr.mean_loss[k] for k in present] == pytest.approx([rgb.mean_loss[k] for k in present], rel=1e-6)
    unflipped = PixelwiseModel("BGR").eval()
    unflipped.input_format = "RGB"  # as if the filter fed it RGB: other losses
    other = pass1(unflipped, source, tmp_path).mean_loss
    assert [other[k] for k in present] != pytest.approx([rgb.mean_loss[k] for k in present], rel=1e-3)


def write_pairs(root, sizes, seed=0):
    """Random PNG images and raw ADE-style masks (0 = unlabeled, class k stored as k + 1) of the given sizes."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i, (h, w) in enumerate(sizes):
        cv2.imwrite(str(root / "images" / f"p{i}.png"), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        cv2.imwrite(str(root / "masks" / f"p{i}.png"), rng.integers(0, K, (h, w), dtype=np.uint8))  # no class 3
    return SourceSpec(None, str(root / "images"), str(root / "masks"), True, IGNORE, ".png", ".png").pairs()


def pass1(model, source, tmp_path):
    """Pass 1 of a filter run in batches of 3 over ``source``."""
    options = FilterOptions(str(tmp_path / "out"), batch_size=3, num_workers=0, progress=False)
    return SyntheticFilter(model, options, source, ["a", "b", "c", "d"]).class_loss_pass(source)[0]


def test_pass1_class_means_equal_a_per_image_brute_force_with_padding_ignored(tmp_path):
    sizes = [(20, 30), (20, 30), (17, 23), (31, 12), (20, 29)]
    source = write_pairs(tmp_path, sizes)
    model = PixelwiseModel().eval()
    assert any(len({sizes[i] for i in b}) > 1 for b in plan_batches(sizes, batch_size=3))  # a padded batch
    stats = pass1(model, source, tmp_path)

    sums, counts = np.zeros(K), np.zeros(K, np.int64)
    for record in source.records:
        image = cv2.cvtColor(cv2.imread(record["file_name"]), cv2.COLOR_BGR2RGB)
        raw = cv2.imread(record["sem_seg_file_name"], cv2.IMREAD_UNCHANGED).astype(np.int64)
        x = (torch.from_numpy(image).permute(2, 0, 1).float() - model.pixel_mean) / model.pixel_std
        with torch.no_grad():
            log_probs = model.predict_log_probs(x[None])[0].double().numpy()
        for (y, x_), value in np.ndenumerate(raw):
            if value != 0:  # raw 0 = unlabeled
                sums[value - 1] -= log_probs[value - 1, y, x_]
                counts[value - 1] += 1
    assert stats.pixels == counts.tolist() and counts[3] == 0
    for c in range(3):
        assert stats.mean_loss[c] == pytest.approx(sums[c] / counts[c], rel=1e-6)
    assert stats.mean_loss[3] is None and stats.dataset == source.description


def test_batches_are_padded_as_at_test_time_not_to_the_training_crop(tmp_path):
    """A model whose training batches pad to 512 (INPUT.SIZE_DIVISIBILITY) but whose test path pads to 8: the filter
    sees each image as evaluation would, 20x30 -> 24x32, not 512x512."""
    source = write_pairs(tmp_path, [(20, 30)])
    model = PixelwiseModel().eval()
    model.size_divisibility, model.inference = 512, SegmentationInference(size_divisibility=8)
    seen = []
    predict = model.predict_log_probs
    model.predict_log_probs = lambda images: seen.append(tuple(images.shape[-2:])) or predict(images)
    pass1(model, source, tmp_path)
    assert seen == [(24, 32)]
