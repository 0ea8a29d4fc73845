"""SegFormer's all-MLP decoder and the whole SegFormer (MiT + decoder under the per-pixel meta-architecture)."""

import pytest
import torch
from fvcore.nn import parameter_count

from freemask.config import get_cfg
from freemask.modeling import build_model
from freemask.modeling.backbone.base import ShapeSpec
from freemask.modeling.backbone.mix_transformer import SEGFORMER_VARIANTS, MixTransformer
from freemask.modeling.heads.segformer_head import SegFormerHead

MIT_B0_SHAPES = {f"res{i + 2}": ShapeSpec(c, 4 * 2**i) for i, c in enumerate(SEGFORMER_VARIANTS["b0"].widths)}


def head(**kwargs):
    args = {"num_classes": 5, "in_features": list(MIT_B0_SHAPES), "embed_dim": 32, "dropout": 0.0, **kwargs}
    return SegFormerHead(MIT_B0_SHAPES, **args)


def features(n=2, size=64):
    return {
        name: torch.randn(n, s.channels, -(-size // s.stride), -(-size // s.stride))
        for name, s in MIT_B0_SHAPES.items()
    }


def segformer_cfg(variant="b0", num_classes=5, decoder_dim=32):
    cfg = get_cfg()
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.META_ARCHITECTURE = "EncoderDecoder"
    cfg.MODEL.BACKBONE.NAME = "MixTransformer"
    cfg.MODEL.BACKBONE.DROP_PATH_RATE = 0.0
    cfg.MODEL.BACKBONE.MIT.VARIANT = variant
    cfg.MODEL.SEGFORMER.DECODER_DIM = decoder_dim
    cfg.MODEL.SEM_SEG_HEAD.NAME = "SegFormerHead"
    cfg.MODEL.SEM_SEG_HEAD.NORM = "BN"
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = num_classes
    cfg.INPUT.SIZE_DIVISIBILITY = 0
    return cfg


def test_logits_at_the_finest_stride_and_gradient_on_every_parameter():
    decoder = head().train()
    logits = decoder(features(size=70))
    assert logits.shape == (2, 5, 18, 18)
    loss = decoder.losses(logits, torch.randint(0, 5, (2, 70, 70)))["loss_sem_seg"]
    loss.backward()
    assert torch.isfinite(loss) and not [n for n, p in decoder.named_parameters() if p.grad is None]


def test_levels_fused_finest_first_whatever_order_they_are_listed_in():
    torch.manual_seed(0)
    listed = head()
    torch.manual_seed(0)
    reversed_ = head(in_features=list(reversed(MIT_B0_SHAPES)))
    assert reversed_.in_features == ["res2", "res3", "res4", "res5"]
    x = features()
    torch.testing.assert_close(listed.eval()(x), reversed_.eval()(x))


def test_names_map_to_mmsegmentation_by_conv_and_bn_indices():
    keys = set(head().state_dict())
    assert {"convs.3.0.weight", "convs.3.1.running_var", "fusion_conv.0.weight", "fusion_conv.1.bias"} <= keys
    assert {"conv_seg.weight", "conv_seg.bias"} <= keys
    assert head().fusion_conv[0].in_channels == 4 * 32 and head().convs[0][0].bias is None


def test_all_ignored_crop_gives_zero_loss_not_nan():
    for avg_non_ignore in (False, True):
        decoder = head(loss_avg_non_ignore=avg_non_ignore)
        loss = decoder.losses(decoder(features()), torch.full((2, 64, 64), 255))["loss_sem_seg"]
        assert loss.item() == 0.0


def test_ignored_pixels_count_in_the_mean_unless_averaging_over_labelled_ones():
    decoder = head().eval()
    logits = decoder(features())
    labels = torch.randint(0, 5, (2, 64, 64))
    half_ignored = labels.clone()
    half_ignored[:, :, 32:] = 255
    labelled_only = head(loss_avg_non_ignore=True).losses(logits, half_ignored)["loss_sem_seg"]
    all_pixels = decoder.losses(logits, half_ignored)["loss_sem_seg"]
    torch.testing.assert_close(all_pixels, labelled_only / 2)
    expected = torch.nn.functional.cross_entropy(
        torch.nn.functional.interpolate(logits, size=(64, 64), mode="bilinear"), labels
    )
    torch.testing.assert_close(decoder.losses(logits, labels)["loss_sem_seg"], expected)


@pytest.mark.parametrize("variant,expected", [("b0", 256), ("b1", 256), ("b2", 768), ("b5", 768)])
def test_decoder_width_zero_means_the_papers_choice_for_the_variant(variant, expected):
    cfg = segformer_cfg(variant, decoder_dim=0)
    shapes = {f"res{i + 2}": ShapeSpec(c, 4 * 2**i) for i, c in enumerate(SEGFORMER_VARIANTS[variant].widths)}
    assert SegFormerHead.from_config(cfg, shapes)["embed_dim"] == expected
    cfg.MODEL.SEGFORMER.DECODER_DIM = 128
    assert SegFormerHead.from_config(cfg, shapes)["embed_dim"] == 128


def count(module):
    return parameter_count(module)[""]


# SegFormer paper, table 1: decoder and whole-model parameters (millions) on ADE20K (150 classes) with the paper's
# decoder widths. The decoder figures are checked at their published precision (0.1M); whole models within 1%, B0
# within 2.5% for the encoder reason given in test_mix_transformer.py (3.32M released vs 3.4M printed).
@pytest.mark.parametrize(
    "variant,decoder,total,tolerance",
    [("b0", 0.4, 3.8, 0.025), ("b1", 0.6, 13.7, 0.01), ("b2", 3.3, 27.5, 0.01), ("b3", 3.3, 47.3, 0.01),
     ("b4", 3.3, 64.1, 0.01), ("b5", 3.3, 84.7, 0.01)],
)  # fmt: skip
def test_decoder_and_whole_model_parameter_counts_match_the_paper(variant, decoder, total, tolerance):
    spec = SEGFORMER_VARIANTS[variant]
    with torch.device("meta"):
        encoder = MixTransformer(widths=spec.widths, depths=spec.depths)
        mlp_decoder = SegFormerHead(
            encoder.output_shape(),
            num_classes=150,
            in_features=list(encoder.output_shape()),
            embed_dim=spec.decoder_dim,
        )
    assert round(count(mlp_decoder) / 1e6, 1) == decoder
    assert (count(encoder) + count(mlp_decoder)) / 1e6 == pytest.approx(total, rel=tolerance)


def color_blocks(n=2, size=64, classes=3, block=8, seed=0):
    """Images whose 8x8 blocks are noisy copies of a per-class colour, and their labels."""
    g = torch.Generator().manual_seed(seed)
    palette = torch.tensor([[220, 40, 40], [40, 200, 60], [50, 60, 210]], dtype=torch.float32)[:classes]
    labels = torch.randint(0, classes, (n, size // block, size // block), generator=g)
    labels = labels.repeat_interleave(block, 1).repeat_interleave(block, 2)
    images = palette[labels].permute(0, 3, 1, 2) + 25 * torch.randn(n, 3, size, size, generator=g)
    return images.clamp(0, 255).to(torch.uint8), labels


def test_segformer_overfits_one_toy_batch():
    torch.manual_seed(0)
    model = build_model(segformer_cfg(num_classes=3))
    images, labels = color_blocks()
    batch = [{"image": im, "sem_seg": lab, "height": 64, "width": 64} for im, lab in zip(images, labels)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(40):
        optimizer.zero_grad()
        model(batch)["loss_sem_seg"].backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        predictions = torch.stack([out["sem_seg"].argmax(0) for out in model(batch)])
    assert (predictions == labels).float().mean() > 0.9
