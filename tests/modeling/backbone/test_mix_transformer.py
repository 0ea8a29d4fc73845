"""Mix Transformer (SegFormer encoder): shapes, published sizes, official ImageNet weights from a local file."""

import logging

import pytest
import torch
from fvcore.nn import parameter_count

from freemask.config import ConfigError, get_cfg
from freemask.modeling import build_backbone
from freemask.modeling.backbone.mix_transformer import (
    OFFICIAL_STAGE_PARTS,
    SEGFORMER_VARIANTS,
    MixTransformer,
    load_official_mit_weights,
    official_mit_key,
)
from freemask.modeling.backbone.weights import WeightFileError

B0 = SEGFORMER_VARIANTS["b0"]


def mit(variant="b0", **kwargs):
    spec = SEGFORMER_VARIANTS[variant]
    return MixTransformer(widths=spec.widths, depths=spec.depths, **kwargs)


def encoder_params(variant: str) -> int:
    with torch.device("meta"):  # sizes only: no memory, no initialisation
        return parameter_count(mit(variant))[""]


@pytest.mark.parametrize("size", [(64, 64), (96, 160), (70, 45)])
def test_features_named_by_stride_with_ceil_sizes(size):
    model = mit().eval()
    with torch.no_grad():
        features = model(torch.randn(2, 3, *size))
    assert list(features) == ["res2", "res3", "res4", "res5"]
    for (name, spec), channels in zip(model.output_shape().items(), B0.widths):
        assert spec.channels == channels
        expected = tuple(-(-s // spec.stride) for s in size)
        assert features[name].shape == (2, channels, *expected) and features[name].is_contiguous()
    assert [s.stride for s in model.output_shape().values()] == [4, 8, 16, 32]


def test_gradient_reaches_every_parameter():
    model = mit(drop_path_rate=0.0).train()
    features = model(torch.randn(2, 3, 64, 64))
    sum(f.square().mean() for f in features.values()).backward()
    assert not [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]


def test_subset_of_outputs_builds_only_the_stages_it_needs():
    model = mit(out_features=("res3",))
    assert len(model.stages) == 2 and list(model.output_shape()) == ["res3"]
    assert list(model(torch.randn(1, 3, 64, 64))) == ["res3"]
    with pytest.raises(ValueError, match="res6"):
        mit(out_features=("res6",))


def test_reduction_ratios_shrink_keys_and_drop_path_grows_linearly():
    model = mit("b1")
    srs = [stage.blocks[0].attn.sr_ratio for stage in model.stages]
    assert srs == [8, 4, 2, 1]
    assert not hasattr(model.stages[3].blocks[0].attn, "sr")
    assert model.stages[0].blocks[0].attn.sr.stride == (8, 8)
    rates = [
        b.drop_path.drop_prob if hasattr(b.drop_path, "drop_prob") else 0.0 for s in model.stages for b in s.blocks
    ]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.1) and rates == sorted(rates)
    assert model.stages[0].blocks[0].mlp.dwconv.groups == 64 * 4  # depth-wise 3x3 over the MLP's hidden width


# SegFormer paper, table 1 (encoder parameters, millions). The released code (mlp ratio 4 in every stage, which the
# official weights have) gives 3.32M for B0: the paper's 3.4M matches MLP ratios (8, 8, 4, 4), so B0 gets 2.5%.
@pytest.mark.parametrize(
    "variant,published,tolerance",
    [("b0", 3.4, 0.025), ("b1", 13.1, 0.01), ("b2", 24.2, 0.01), ("b3", 44.0, 0.01), ("b4", 60.8, 0.01),
     ("b5", 81.4, 0.01)],
)  # fmt: skip
def test_encoder_parameter_counts_match_the_paper(variant, published, tolerance):
    assert encoder_params(variant) / 1e6 == pytest.approx(published, rel=tolerance)


def test_built_from_config_with_variant_and_errors_name_the_key():
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.NAME = "MixTransformer"
    cfg.MODEL.BACKBONE.MIT.VARIANT = "b0"
    cfg.MODEL.BACKBONE.DROP_PATH_RATE = 0.0
    model = build_backbone(cfg)
    assert [s.channels for s in model.output_shape().values()] == list(B0.widths)
    assert [len(s.blocks) for s in model.stages] == list(B0.depths)
    cfg.MODEL.BACKBONE.MIT.VARIANT = "b9"
    with pytest.raises(ConfigError, match="MODEL.BACKBONE.MIT.VARIANT 'b9'.*b0, b1"):
        build_backbone(cfg)
    cfg.MODEL.BACKBONE.MIT.VARIANT = "b0"
    cfg.MODEL.BACKBONE.FREEZE_AT = 2
    with pytest.raises(ConfigError, match="FREEZE_AT"):
        build_backbone(cfg)


def official_layout(model: MixTransformer) -> dict:
    """The state dict of ``model`` under the official release's names, built by inverting our naming."""
    ours_to_official = {}
    for stage in range(len(model.stages)):
        for official, part in OFFICIAL_STAGE_PARTS.items():
            ours_to_official[f"stages.{stage}.{part}."] = f"{official}{stage + 1}."
    state = {}
    for key, value in model.state_dict().items():
        prefix = next(p for p in ours_to_official if key.startswith(p))
        official = ours_to_official[prefix] + key[len(prefix) :].replace("mlp.dwconv.", "mlp.dwconv.dwconv.")
        state[official] = value.clone()
    return state


def test_official_names_map_by_the_table():
    assert official_mit_key("patch_embed1.proj.weight") == "stages.0.patch_embed.proj.weight"
    assert official_mit_key("block3.5.attn.kv.bias") == "stages.2.blocks.5.attn.kv.bias"
    assert official_mit_key("block2.0.mlp.dwconv.dwconv.weight") == "stages.1.blocks.0.mlp.dwconv.weight"
    assert official_mit_key("norm4.weight") == "stages.3.norm.weight"
    assert official_mit_key("head.weight") is None


def test_official_imagenet_file_loads_with_a_report(tmp_path, caplog):
    torch.manual_seed(0)
    source = mit()
    state = official_layout(source)
    assert "block1.0.mlp.dwconv.dwconv.weight" in state and "block4.1.attn.q.weight" in state
    state["head.weight"], state["head.bias"] = torch.randn(1000, 256), torch.randn(1000)  # the ImageNet classifier
    path = tmp_path / "mit_b0.pth"
    torch.save(state, path)

    torch.manual_seed(1)
    with caplog.at_level(logging.INFO, logger="freemask.modeling.backbone.mix_transformer"):
        loaded = mit(pretrained=str(path))
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert "unexpected (2): head.weight, head.bias" in caplog.text and "missing (0)" in caplog.text


def test_tensor_of_another_shape_is_reported_and_skipped(tmp_path):
    state = official_layout(mit())
    state["patch_embed1.proj.weight"] = torch.zeros(32, 3, 3, 3)
    path = tmp_path / "mit_b0.pth"
    torch.save({"state_dict": state}, path)  # nested, as some re-saved copies are
    model = mit()
    before = model.stages[0].patch_embed.proj.weight.clone()
    report = load_official_mit_weights(model, str(path))
    assert report.mismatched == [("patch_embed1.proj.weight", (32, 3, 3, 3), (32, 3, 7, 7))]
    assert report.missing == ["stages.0.patch_embed.proj.weight"] and report.loaded == len(state) - 1
    assert torch.equal(model.stages[0].patch_embed.proj.weight, before)


def test_file_of_another_size_or_layout_url_and_missing_file_give_one_line_errors(tmp_path):
    path = tmp_path / "mit_b1.pth"
    torch.save(official_layout(mit("b1", out_features=("res2",))), path)
    with pytest.raises(WeightFileError, match=r"another MiT size \(patch_embed1.proj.weight: \(64, 3, 7, 7\)"):
        mit(pretrained=str(path))
    path = tmp_path / "mmseg_mit_b0.pth"
    torch.save({"layers.0.0.projection.weight": torch.zeros(32, 3, 7, 7)}, path)
    with pytest.raises(WeightFileError, match="MMSegmentation layout. Pass the official NVlabs mit_b"):
        mit(pretrained=str(path))
    for bad in ("https://example.com/mit_b0.pth", str(tmp_path / "absent.pth")):
        with pytest.raises(FileNotFoundError, match="download the weights"):
            mit(pretrained=bad)
