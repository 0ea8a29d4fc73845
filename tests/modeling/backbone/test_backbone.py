import copy
import logging

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file
from timm.models.swin_transformer import SwinTransformerBlock

from freemask.config import get_cfg
from freemask.modeling.backbone.timm_backbone import TimmBackbone, _PadThenShiftSwinBlock
from freemask.modeling.backbone.weights import WeightFileError, load_timm_weights


def test_resnet_features_named_by_stride():
    backbone = TimmBackbone("resnet18")
    shapes = backbone.output_shape()
    assert {k: (v.channels, v.stride) for k, v in shapes.items()} == {
        "res2": (64, 4),
        "res3": (128, 8),
        "res4": (256, 16),
        "res5": (512, 32),
    }
    out = backbone(torch.randn(2, 3, 64, 96))
    for name, spec in shapes.items():
        assert out[name].shape == (2, spec.channels, 64 // spec.stride, 96 // spec.stride)


def test_subset_of_features_and_unknown_feature():
    backbone = TimmBackbone("resnet18", out_features=["res3", "res5"])
    assert set(backbone(torch.randn(1, 3, 64, 64))) == {"res3", "res5"}
    with pytest.raises(ValueError, match="res6"):
        TimmBackbone("resnet18", out_features=["res6"])


def test_freeze_at_two_freezes_stem_and_res2_only():
    backbone = TimmBackbone("resnet18", freeze_at=2)
    frozen = {n.split(".")[1] for n, p in backbone.named_parameters() if not p.requires_grad}
    trainable = {n.split(".")[1] for n, p in backbone.named_parameters() if p.requires_grad}
    assert frozen == {"conv1", "layer1"}  # their batch norms became FrozenBatchNorm2d: buffers, no parameters
    assert trainable == {"layer2", "layer3", "layer4"}
    assert type(backbone.body.bn1).__name__ == "FrozenBatchNorm2d"
    assert type(backbone.body.layer2[0].bn1).__name__ == "BatchNorm2d"


def test_frozen_bn_keeps_statistics_in_training_mode():
    backbone = TimmBackbone("resnet18", norm="FrozenBN").train()
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    backbone(torch.randn(2, 3, 64, 64) * 5 + 3)
    after = backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_pretrained_weights_from_local_file(tmp_path):
    reference = timm.create_model("resnet18")
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    backbone = TimmBackbone("resnet18", pretrained=str(path))
    assert torch.equal(backbone.body.conv1.weight, reference.conv1.weight)
    assert torch.equal(backbone.body.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)


def test_remote_or_missing_weights_are_refused_with_a_hint(tmp_path):
    with pytest.raises(FileNotFoundError, match="download the weights"):
        TimmBackbone("resnet18", pretrained="https://example.com/resnet18.pth")
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        TimmBackbone("resnet18", pretrained=str(tmp_path / "missing.pth"))


# --- ResNet-50/101 and Swin-T/S/B/L -------------------------------------------------------------------------------

SWIN_T = "swin_tiny_patch4_window7_224"


def _channels_strides(backbone):
    return {k: (v.channels, v.stride) for k, v in backbone.output_shape().items()}


@pytest.mark.parametrize("name", ["resnet50", "resnet101"])
def test_resnet50_101_shapes(name):
    backbone = TimmBackbone(name).eval()
    assert _channels_strides(backbone) == {"res2": (256, 4), "res3": (512, 8), "res4": (1024, 16), "res5": (2048, 32)}
    with torch.no_grad():
        out = backbone(torch.randn(1, 3, 64, 96))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "res2": (1, 256, 16, 24),
        "res3": (1, 512, 8, 12),
        "res4": (1, 1024, 4, 6),
        "res5": (1, 2048, 2, 3),
    }


@pytest.fixture(scope="module")
def swin_t():
    return TimmBackbone(SWIN_T, drop_path_rate=0.3).eval()


@pytest.mark.parametrize("size", [(512, 512), (256, 384)])
def test_swin_t_accepts_crop_and_non_square_sizes(swin_t, size):
    with torch.no_grad():
        out = swin_t(torch.randn(1, 3, *size))
    h, w = size
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "res2": (1, 96, h // 4, w // 4),
        "res3": (1, 192, h // 8, w // 8),
        "res4": (1, 384, h // 16, w // 16),
        "res5": (1, 768, h // 32, w // 32),
    }
    # the output LayerNorm (identity-initialised) normalises each position over channels
    assert torch.allclose(out["res4"].mean(1), torch.zeros(1), atol=1e-4)


def test_swin_t_drop_path_and_windows(swin_t):
    blocks = [b for b in swin_t.body.modules() if isinstance(b, SwinTransformerBlock)]
    assert len(blocks) == 12 and all(type(b) is _PadThenShiftSwinBlock for b in blocks)
    assert blocks[-1].drop_path1.drop_prob == pytest.approx(0.3)
    assert isinstance(blocks[0].drop_path1, torch.nn.Identity)  # linear schedule starts at 0
    # segmentation Swin shifts at every stage, also the last one (16x16 at 512 input, larger than the window)
    assert blocks[-1].window_size == (7, 7) and blocks[-1].shift_size == (3, 3)


@pytest.mark.parametrize(
    "name, channels",
    [
        ("swin_small_patch4_window7_224", (96, 192, 384, 768)),
        ("swin_base_patch4_window12_384", (128, 256, 512, 1024)),
        ("swin_large_patch4_window12_384", (192, 384, 768, 1536)),
    ],
)
def test_swin_s_b_l_channels_and_strides(name, channels):
    with torch.device("meta"):  # shapes only: no memory, no weight init
        backbone = TimmBackbone(name)
    assert _channels_strides(backbone) == {f"res{i + 2}": (c, 4 * 2**i) for i, c in enumerate(channels)}
    window = 12 if "window12" in name else 7
    assert all(
        b.window_size == (window, window) for b in backbone.body.modules() if isinstance(b, SwinTransformerBlock)
    )


def test_pad_then_shift_block_matches_timm_on_window_multiples_only():
    torch.manual_seed(0)
    block = SwinTransformerBlock(
        16,
        input_resolution=(14, 14),
        num_heads=2,
        window_size=7,
        shift_size=3,
        always_partition=True,
        dynamic_mask=True,
    ).eval()
    ours = copy.deepcopy(block)
    ours.__class__ = _PadThenShiftSwinBlock
    x = torch.randn(2, 14, 14, 16)
    assert torch.allclose(ours(x), block(x), atol=1e-6)
    x = torch.randn(2, 10, 12, 16)  # padded to 14x14: shifting before or after padding gives other windows
    assert ours(x).shape == x.shape and not torch.allclose(ours(x), block(x), atol=1e-3)


def test_freeze_at_for_swin():
    with torch.device("meta"):
        one = TimmBackbone(SWIN_T, freeze_at=1)
        two = TimmBackbone(SWIN_T, freeze_at=2)
        five = TimmBackbone(SWIN_T, freeze_at=5)

    def frozen(backbone):
        return {
            n.split(".")[1] for n, p in backbone.named_parameters() if n.startswith("body.") and not p.requires_grad
        }

    assert frozen(one) == {"patch_embed"}
    assert frozen(two) == {"patch_embed", "layers_0"}
    assert frozen(five) == {"patch_embed", "layers_0", "layers_1", "layers_2", "layers_3"}
    assert all(p.requires_grad for p in five.out_norms.parameters())


def test_window_size_only_for_swin():
    with pytest.raises(ValueError, match="WINDOW_SIZE"):
        TimmBackbone("resnet18", window_size=12)
    assert get_cfg().MODEL.BACKBONE.WINDOW_SIZE == 0
    with pytest.raises(ValueError, match="not a timm model"):
        TimmBackbone("swin_tinyy_patch4_window7_224")


@pytest.fixture(scope="module")
def swin_t_state():
    torch.manual_seed(0)
    return timm.create_model(SWIN_T).state_dict()


def test_swin_timm_safetensors_loads_and_resizes_to_another_window(tmp_path, swin_t_state, caplog):
    path = tmp_path / "swin_t.safetensors"
    save_file({k: v.contiguous() for k, v in swin_t_state.items()}, str(path))
    with caplog.at_level(logging.INFO, logger="freemask.modeling.backbone.timm_backbone"):
        backbone = TimmBackbone(SWIN_T, pretrained=str(path), window_size=12)
    body = backbone.body.state_dict()
    assert torch.equal(body["layers_2.blocks.5.attn.qkv.weight"], swin_t_state["layers.2.blocks.5.attn.qkv.weight"])
    assert torch.equal(
        body["layers_3.downsample.reduction.weight"], swin_t_state["layers.3.downsample.reduction.weight"]
    )
    # (2 * 12 - 1)^2 relative offsets, interpolated by timm from the 13 x 13 table of window 7, not skipped
    assert body["layers_0.blocks.0.attn.relative_position_bias_table"].shape == (23 * 23, 3)
    assert backbone.body.layers_0.blocks[0].window_size == (12, 12)
    assert "missing (0)" in caplog.text and "shape mismatches, not loaded (0)" in caplog.text
    assert "unexpected (4): head.fc.bias, head.fc.weight, norm.bias" in caplog.text


def _official_swin_layout(timm_state):
    """The Swin release's layout: downsampling at the end of a stage, ``head.*``, index/mask buffers, under "model"."""
    official = {}
    for k, v in timm_state.items():
        if ".downsample." in k:
            stage = int(k.split(".")[1])
            k = k.replace(f"layers.{stage}.downsample", f"layers.{stage - 1}.downsample")
        official[k.replace("head.fc.", "head.")] = v
        if k.endswith("attn.relative_position_bias_table"):
            official[k.replace("bias_table", "index")] = torch.zeros(49, 49, dtype=torch.long)
    official["layers.0.blocks.1.attn_mask"] = torch.zeros(64, 49, 49)
    return {"model": official}


def test_official_swin_release_checkpoint_loads(tmp_path, swin_t_state):
    path = tmp_path / "swin_tiny_patch4_window7_224.pth"
    torch.save(_official_swin_layout(swin_t_state), path)
    assert "layers.0.downsample.reduction.weight" in torch.load(path)["model"]
    body = timm.create_model(SWIN_T, features_only=True, dynamic_img_size=True, always_partition=True)
    report = load_timm_weights(body, SWIN_T, str(path), {"dynamic_img_size": True, "always_partition": True})
    state = body.state_dict()
    for key in [
        "patch_embed.proj.weight",
        "layers.1.downsample.reduction.weight",
        "layers.3.downsample.norm.weight",
        "layers.1.blocks.1.attn.relative_position_bias_table",
        "layers.2.blocks.0.mlp.fc2.bias",
    ]:
        assert torch.equal(state[key.replace(".", "_", 1) if key.startswith("layers") else key], swin_t_state[key])
    assert report.missing == [] and report.mismatched == []
    assert sorted(report.unexpected) == ["head.fc.bias", "head.fc.weight", "norm.bias", "norm.weight"]
    assert report.loaded == len(state)


def test_torchvision_resnet_checkpoint_loads(tmp_path):
    reference = torchvision.models.resnet18()
    path = tmp_path / "resnet18-torchvision.pth"
    torch.save(reference.state_dict(), path)
    body = timm.create_model("resnet18", features_only=True)
    report = load_timm_weights(body, "resnet18", str(path), {})
    assert torch.equal(body.layer3[0].downsample[1].running_var, reference.layer3[0].downsample[1].running_var)
    assert torch.equal(body.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
    assert sorted(report.unexpected) == ["fc.bias", "fc.weight"] and report.missing == []


def test_shape_mismatch_is_reported_and_skipped(tmp_path):
    state = timm.create_model("resnet18").state_dict()
    state["conv1.weight"] = torch.ones(64, 3, 3, 3)
    path = tmp_path / "r18.pth"
    torch.save(state, path)
    body = timm.create_model("resnet18", features_only=True)
    before = body.conv1.weight.clone()
    report = load_timm_weights(body, "resnet18", str(path), {})
    assert report.mismatched == [("conv1.weight", (64, 3, 3, 3), (64, 3, 7, 7))]
    assert report.missing == ["conv1.weight"] and torch.equal(body.conv1.weight, before)
    assert "conv1.weight file (64, 3, 3, 3) vs model (64, 3, 7, 7)" in report.summary()


def test_corrupt_file_and_hub_name_give_one_line_errors(tmp_path):
    path = tmp_path / "broken.pth"
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(WeightFileError, match="broken.pth") as info:
        TimmBackbone("resnet18", pretrained=str(path))
    assert "\n" not in str(info.value)
    with pytest.raises(FileNotFoundError, match="download the weights"):
        TimmBackbone(SWIN_T, pretrained="timm/swin_tiny_patch4_window7_224.ms_in1k")


@pytest.mark.parametrize("size", [(256, 320), (203, 277), (510, 683)])
def test_swin_runs_as_the_release_at_any_size(size, swin_features):
    """Equal, bit for bit, to a forward written in the official order (pad to the patch size at the embedding, per
    window, at odd merges; never the whole image to 32): 256x320 pins the multiple-of-32 outputs Mask2Former uses,
    the others are sizes timm's Swin refuses (not multiples of 4) or pads differently."""
    torch.manual_seed(0)
    backbone = TimmBackbone(SWIN_T, swin_size=(32, (2, 2, 2, 2), (1, 2, 4, 8))).eval()
    images = torch.randn(1, 3, *size)
    with torch.no_grad():
        ours = backbone(images)
        reference, _ = swin_features(backbone, images)
    h, w = size
    for i, name in enumerate(["res2", "res3", "res4", "res5"]):
        assert ours[name].shape[-2:] == (-(-h // 2 ** (i + 2)), -(-w // 2 ** (i + 2)))
        assert torch.equal(ours[name], reference[name]), name
