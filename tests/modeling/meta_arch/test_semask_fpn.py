"""SeMask FPN head and meta-architecture: shapes, the CE + 0.4 x prior CE loss on a toy batch, OHEM, building from the
toy config, whole-model parameter counts of T/S/B/L against the paper, and single-scale "multi-scale" inference."""

import pytest
import torch
import torch.nn.functional as F
from fvcore.nn import parameter_count

from freemask.config import ConfigError, get_cfg
from freemask.modeling import build_model
from freemask.modeling.backbone.base import ShapeSpec
from freemask.modeling.heads.losses import pixel_cross_entropy
from freemask.modeling.heads.semask_fpn_head import SeMaskFPNHead

SHAPES = {f"res{i + 2}": ShapeSpec(8 * 2**i, 4 * 2**i) for i in range(4)}
TOY = "configs/toy/semantic-segmentation/semask_swin_tiny_toy.yaml"
# SeMask paper / README: parameters (millions) of SeMask-FPN on ADE20K (150 classes).
PUBLISHED = {
    "tiny_bs16_80k": 35,
    "small_bs16_80k": 56,
    "base_bs16_80k": 96,
    "large_bs16_80k_res640": 211,
}


def toy_inputs(num_classes=5, n=2, size=32):
    torch.manual_seed(0)
    features = {k: torch.randn(n, s.channels, size // s.stride, size // s.stride) for k, s in SHAPES.items()}
    priors = {k: torch.randn(n, num_classes, size // s.stride, size // s.stride) for k, s in SHAPES.items()}
    targets = torch.randint(0, num_classes, (n, size, size))
    targets[:, :4] = 255
    return features, priors, targets


def head(**kwargs):
    args = dict(num_classes=5, in_features=list(SHAPES), channels=16, norm="BN")
    return SeMaskFPNHead(SHAPES, **{**args, **kwargs})


def test_towers_reach_stride_4_and_priors_are_upsampled_and_summed():
    features, priors, _ = toy_inputs()
    model = head().eval()
    logits, prior_logits = model(features, priors)
    assert logits.shape == prior_logits.shape == (2, 5, 8, 8)
    assert [len(t) for t in model.towers] == [1, 2, 4, 6]  # a (conv, norm, ReLU) block, then one 2x upsampling each
    expected = priors["res2"]
    for k in ("res3", "res4", "res5"):
        up = priors[k]
        while up.shape[-1] < 8:  # the release's chain of 2x bilinear steps
            up = F.interpolate(up, scale_factor=2, mode="bilinear", align_corners=False)
        expected = expected + up
    torch.testing.assert_close(prior_logits, expected)
    assert model(features)[1] is None  # inference skips the prior decoder


def test_loss_is_ce_plus_0_4_prior_ce_over_all_label_pixels():
    features, priors, targets = toy_inputs()
    model = head().train()
    logits, prior_logits = model(features, priors)
    losses = model.losses((logits, prior_logits), targets)
    assert set(losses) == {"loss_sem_seg", "loss_prior"}

    def ce(x):  # MMSegmentation 0.x: mean over every label pixel, ignored ones counting 0
        x = F.interpolate(x, size=targets.shape[-2:], mode="bilinear", align_corners=False)
        return F.cross_entropy(x, targets, ignore_index=255, reduction="none").mean()

    torch.testing.assert_close(losses["loss_sem_seg"], ce(logits))
    torch.testing.assert_close(losses["loss_prior"], 0.4 * ce(prior_logits))
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.parameters())
    assert head(prior_loss_weight=0.0).losses((logits, prior_logits), targets).keys() == {"loss_sem_seg"}


def test_ohem_keeps_the_hardest_labelled_pixels_per_image():
    _, _, targets = toy_inputs()
    logits = torch.randn(2, 5, 32, 32)
    per_pixel = F.cross_entropy(logits, targets, ignore_index=255, reduction="none")
    top = per_pixel[targets != 255].sort(descending=True).values[: 2 * 100]
    got = pixel_cross_entropy(logits, targets, 255, avg_non_ignore=False, ohem_min_kept=100)
    torch.testing.assert_close(got, top.sum() / targets.numel())
    everything = pixel_cross_entropy(logits, targets, 255, avg_non_ignore=False, ohem_min_kept=10**6)
    torch.testing.assert_close(everything, pixel_cross_entropy(logits, targets, 255, avg_non_ignore=False))


def toy_cfg(*opts):
    cfg = get_cfg()
    cfg.merge_from_file(TOY)
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", *opts])
    return cfg


def test_toy_config_trains_and_predicts():
    torch.manual_seed(0)
    model = build_model(toy_cfg())
    batch = [{"image": torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8),
              "sem_seg": torch.randint(0, 6, (64, 64)), "height": 64, "width": 64}]  # fmt: skip
    losses = model.train()(batch)
    assert set(losses) == {"loss_sem_seg", "loss_prior"} and all(torch.isfinite(v) for v in losses.values())
    with torch.no_grad():
        (out,) = model.eval()(batch)
    assert out["sem_seg"].shape == (6, 64, 64)
    torch.testing.assert_close(out["sem_seg"].sum(0), torch.ones(64, 64))


def test_multi_scale_with_one_ratio_and_no_flip_equals_whole_image():
    torch.manual_seed(0)
    whole = build_model(toy_cfg()).eval()
    aug = build_model(toy_cfg("TEST.AUG.ENABLED", "True", "TEST.AUG.RATIOS", "[1.0]", "TEST.AUG.FLIP", "False"))
    aug.load_state_dict(whole.state_dict())
    aug.eval()
    image = [{"image": torch.randint(0, 256, (3, 70, 90), dtype=torch.uint8), "height": 70, "width": 90}]
    with torch.no_grad():
        torch.testing.assert_close(aug(image)[0]["sem_seg"], whole(image)[0]["sem_seg"], rtol=0, atol=0)
        flipped = build_model(toy_cfg("TEST.AUG.ENABLED", "True", "TEST.AUG.RATIOS", "[1.0]"))
        flipped.load_state_dict(whole.state_dict())
        assert not torch.equal(flipped.eval()(image)[0]["sem_seg"], whole(image)[0]["sem_seg"])  # the switch acts


def test_semask_fpn_refuses_a_backbone_without_priors():
    cfg = toy_cfg("MODEL.BACKBONE.NAME", "TimmBackbone")
    with pytest.raises(ConfigError, match="SeMaskSwin"):
        build_model(cfg)


@pytest.mark.parametrize("recipe", PUBLISHED)
def test_whole_model_parameter_count_matches_the_paper(repo_root, recipe):
    cfg = get_cfg()
    semask = repo_root / "configs" / "ade20k" / "semantic-segmentation" / "semask"
    cfg.merge_from_file(str(semask / f"semask_fpn_swin_{recipe}.yaml"))
    cfg.merge_from_list(["MODEL.BACKBONE.PRETRAINED", "", "MODEL.DEVICE", "meta"])
    with torch.device("meta"):  # sizes only
        model = build_model(cfg)
    count = parameter_count(model)[""] / 1e6
    assert count == pytest.approx(PUBLISHED[recipe], rel=0.02), f"{recipe}: {count:.2f}M"
