"""predict_log_probs: per-pixel log-probabilities for the FreeMask filter's cross-entropy."""

import torch
import torch.nn.functional as F
from torch import nn

from freemask.config import get_cfg
from freemask.modeling import build_model
from freemask.modeling.inference import SegmentationInference
from freemask.modeling.meta_arch.base import SemanticSegmentor
from freemask.modeling.meta_arch.encoder_decoder import EncoderDecoder


def toy_cfg(repo_root, name):
    cfg = get_cfg()
    cfg.merge_from_file(str(repo_root / "configs" / "toy" / "semantic-segmentation" / name))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "4"])
    return cfg


def images(n=2, size=(40, 56)):
    torch.manual_seed(0)
    return torch.randn(n, 3, *size)


def test_semantic_fpn_log_probs_are_the_log_softmax_of_its_logits(repo_root):
    torch.manual_seed(0)
    model = build_model(toy_cfg(repo_root, "semantic_fpn_R18_toy.yaml")).eval()
    x = images()
    with torch.no_grad():
        got = model.predict_log_probs(x)
        logits = model.sem_seg_head(model.backbone(x))
        logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        expected = logits.log_softmax(dim=1)
    assert got.shape == (2, 4, 40, 56)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_mask2former_log_probs_are_its_scores_normalised_over_classes(repo_root):
    torch.manual_seed(0)
    model = build_model(toy_cfg(repo_root, "mask2former_R18_toy.yaml")).eval()
    x = images(n=1, size=(64, 64))
    with torch.no_grad():
        scores = model.predict(x)
        log_probs = model.predict_log_probs(x)
    assert log_probs.shape == scores.shape
    # Mask2Former's scores are not a distribution (the no-object mass is left out) ...
    assert not torch.allclose(scores.sum(1), torch.ones(1, 64, 64), atol=1e-3)
    # ... its log-probabilities are, and they keep the ranking of the scores.
    torch.testing.assert_close(log_probs.exp().sum(1), torch.ones(1, 64, 64))
    torch.testing.assert_close(log_probs.exp(), scores / scores.sum(1, keepdim=True))
    assert torch.equal(log_probs.argmax(1), scores.argmax(1))


class _FixedScores(SemanticSegmentor):
    """A model whose scores are given, to reach the clamping of a class scored exactly 0."""

    def __init__(self, scores: torch.Tensor) -> None:
        super().__init__(
            pixel_mean=[0.0] * 3, pixel_std=[1.0] * 3, size_divisibility=0, ignore_label=255,
            inference=SegmentationInference(),
        )  # fmt: skip
        self.scores = scores

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return self.scores


def test_a_class_scored_zero_gets_a_large_finite_loss_not_infinity():
    scores = torch.tensor([1.0, 0.0, 3.0]).view(1, 3, 1, 1)
    log_probs = _FixedScores(scores).predict_log_probs(torch.zeros(1, 3, 1, 1))
    assert torch.isfinite(log_probs).all()
    assert 80 < -log_probs[0, 1].item() < 90
    torch.testing.assert_close(log_probs[0, [0, 2], 0, 0], torch.tensor([0.25, 0.75]).log())


def test_a_logit_gap_of_200_costs_200_nats_not_the_87_of_a_saturated_softmax():
    """The log of a float32 softmax underflows below exp(-87): a confidently wrong pixel would cost ~87 nats (or
    infinity) whatever its logits; the log_softmax of the logits keeps the true 200."""
    logits = torch.tensor([200.0, 0.0, -5.0]).view(1, 3, 1, 1)
    model = EncoderDecoder(
        backbone=nn.Identity(), sem_seg_head=nn.Identity(), pixel_mean=[0.0] * 3, pixel_std=[1.0] * 3,
        size_divisibility=0, ignore_label=255, inference=SegmentationInference(),
    )  # fmt: skip
    model.predict_logits = lambda images: logits
    loss = F.nll_loss(model.predict_log_probs(torch.zeros(1, 3, 1, 1)), torch.tensor([[[1]]]))
    assert torch.isfinite(loss) and abs(loss.item() - 200.0) < 1e-3
