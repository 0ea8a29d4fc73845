import pytest
import timm
import torch

from freemask.modeling.backbone.timm_backbone import TimmBackbone


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
