"""MODEL.BACKBONE.RES5_MULTI_GRID: res5's 3x3 convolutions dilated per block (FreeSeg's R101c), sizes unchanged."""

import pytest
import torch

from freemask.modeling.backbone.timm_backbone import TimmBackbone


def test_res5_multi_grid_dilates_each_block_and_keeps_sizes():
    torch.manual_seed(0)
    plain = TimmBackbone("resnet18").eval()
    torch.manual_seed(0)
    dilated = TimmBackbone("resnet18", res5_multi_grid=(1, 2)).eval()
    assert [b.conv2.dilation for b in dilated.body.layer4] == [(1, 1), (2, 2)]
    for model in (plain, dilated):  # timm zero-initialises each block's last norm, which would hide conv2
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.data.fill_(1.0)
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        a, b = plain(x), dilated(x)
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
    assert torch.equal(a["res4"], b["res4"]) and not torch.allclose(a["res5"], b["res5"])


def test_res5_multi_grid_errors():
    with pytest.raises(ValueError, match="one dilation per block"):
        TimmBackbone("resnet18", res5_multi_grid=(1, 2, 4))
    with pytest.raises(ValueError, match="applies to ResNets"):
        TimmBackbone("swin_tiny_patch4_window7_224", res5_multi_grid=(1, 2))


def test_deeplab_stem_resnet101_layout():
    """R101c (configs/common/backbones/R101c.yaml): timm's resnet101s has the DeepLab stem 64-64-128 of 3x3s."""
    body = TimmBackbone("resnet101s", res5_multi_grid=(1, 2, 4)).body
    stem = [m for m in body.conv1 if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in stem] == [
        (3, 64, (3, 3)), (64, 64, (3, 3)), (64, 128, (3, 3))
    ]  # fmt: skip
    assert len(body.layer3) == 23 and [b.conv2.dilation[0] for b in body.layer4] == [1, 2, 4]
