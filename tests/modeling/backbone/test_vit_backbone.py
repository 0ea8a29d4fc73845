"""ViT backbone for Segmenter: token map shapes, position-table resampling, local weight loading with a report."""

import logging

import pytest
import timm
import torch
import torch.nn.functional as F

from freemask.modeling.backbone.vit import ViTBackbone, load_vit_weights, resize_pos_embed
from freemask.modeling.backbone.weights import WeightFileError

TINY = "test_vit"  # timm's registered test ViT: width 64, 6 blocks, 2 heads, patch 16, one class token


def test_tokens_form_a_stride16_map_for_any_input_size():
    torch.manual_seed(0)
    backbone = ViTBackbone(TINY, img_size=(64, 64))
    assert backbone.output_shape()["res4"].channels == 64 and backbone.output_shape()["res4"].stride == 16
    features = backbone(torch.randn(2, 3, 100, 70))  # padded bottom/right to 112 x 80
    assert list(features) == ["res4"] and features["res4"].shape == (2, 64, 7, 5)
    features["res4"].sum().backward()
    assert all(p.grad is not None for p in backbone.parameters())


def test_resized_table_keeps_class_row_and_is_bicubic_without_antialiasing():
    torch.manual_seed(0)
    table = torch.randn(1, 1 + 4 * 4, 8)
    assert resize_pos_embed(table, (4, 4), (4, 4), 1) is table
    resized = resize_pos_embed(table, (4, 4), (6, 8), 1)
    assert resized.shape == (1, 1 + 6 * 8, 8) and torch.equal(resized[:, :1], table[:, :1])
    grid = table[:, 1:].reshape(1, 4, 4, 8).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, size=(6, 8), mode="bicubic", align_corners=False, antialias=False)
    assert torch.allclose(resized[:, 1:], expected.permute(0, 2, 3, 1).reshape(1, 48, 8))
    antialiased = F.interpolate(grid, size=(6, 8), mode="bicubic", align_corners=False, antialias=True)
    assert not torch.allclose(expected, antialiased, atol=1e-4)  # timm's on-the-fly kernel would differ
    constant = torch.ones(1, 17, 8)
    assert torch.allclose(resize_pos_embed(constant, (4, 4), (7, 3), 1), torch.ones(1, 22, 8), atol=1e-6)


def test_other_input_size_equals_a_model_built_for_it_with_the_resampled_table():
    torch.manual_seed(0)
    crop = ViTBackbone(TINY, img_size=(64, 64)).eval()
    other = ViTBackbone(TINY, img_size=(96, 128)).eval()
    state = crop.state_dict()
    state["vit.pos_embed"] = resize_pos_embed(state["vit.pos_embed"], (4, 4), (6, 8), 1)
    other.load_state_dict(state)
    image = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        assert torch.allclose(crop(image)["res4"], other(image)["res4"], atol=1e-5)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_timm_file_with_another_grid_loads_resampled_and_reported(tmp_path, suffix, caplog):
    torch.manual_seed(0)
    source = timm.create_model(TINY, img_size=64, num_classes=10)  # 4x4 table and a classifier, as ImageNet files
    path = str(tmp_path / f"vit{suffix}")
    if suffix == ".pth":
        torch.save(source.state_dict(), path)
    else:
        from safetensors.torch import save_file

        save_file(source.state_dict(), path)
    target = ViTBackbone(TINY, img_size=(128, 128)).vit
    report = load_vit_weights(target, path)
    assert report.pos_embed_resized == ((4, 4), (8, 8))
    assert sorted(report.unexpected) == ["head.bias", "head.weight"] and not report.missing and not report.mismatched
    assert report.loaded == len(target.state_dict())
    assert torch.equal(target.blocks[3].attn.qkv.weight, source.blocks[3].attn.qkv.weight)
    assert torch.allclose(target.pos_embed, resize_pos_embed(source.pos_embed, (4, 4), (8, 8), 1))
    assert "pos_embed resampled from a 4x4 to a 8x8 grid" in report.summary()

    with caplog.at_level(logging.INFO, logger="freemask"):
        ViTBackbone(TINY, img_size=(128, 128), pretrained=path)
    assert f"{report.loaded} tensors loaded" in caplog.text and "unexpected (2): head." in caplog.text
    assert "4x4 to a 8x8" in caplog.text


def test_bad_weight_files_and_urls_are_refused_with_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a local file"):
        ViTBackbone(TINY, img_size=(64, 64), pretrained="https://example.com/vit.pth")
    state = timm.create_model(TINY, img_size=64).state_dict()
    state["pos_embed"] = state["pos_embed"][:, :15]  # class row + 14 grid rows: not a square grid
    path = str(tmp_path / "odd.pth")
    torch.save(state, path)
    with pytest.raises(WeightFileError, match="odd.pth: pos_embed has 15 rows"):
        load_vit_weights(ViTBackbone(TINY, img_size=(64, 64)).vit, path)


def test_models_and_outputs_it_cannot_serve_are_named():
    for name in ("resnet18", "test_vit2"):  # not a ViT; a ViT with a register token and no class token
        with pytest.raises(ValueError, match="needs a timm VisionTransformer with a class token"):
            ViTBackbone(name, img_size=(64, 64))
    with pytest.raises(ValueError, match="not a timm model"):
        ViTBackbone("vit_nonexistent_patch16")
    with pytest.raises(ValueError, match=r"OUT_FEATURES for test_vit must be \['res4'\]"):
        ViTBackbone(TINY, img_size=(64, 64), out_features=("res5",))
