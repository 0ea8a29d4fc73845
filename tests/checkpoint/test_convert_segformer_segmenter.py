"""Conversion of FreeMask's MMSegmentation SegFormer and Segmenter checkpoints to our layout.

Three independent kinds of evidence:

* names and shapes the release files have, spelled out from MMSegmentation's sources and the parameter lists the
  FreeMask training logs print (for the published sizes) or derived from them for the toy sizes;
* numerical equivalence: modules computed the way MMSegmentation computes them (``nn.MultiheadAttention`` with a
  stacked ``in_proj``, 1x1 convs) give the outputs of ours once their weights went through the table, which pins
  down the q / kv split and the conv-to-linear reshape;
* round trips: release-layout files made by reading the tables backwards on a model whose values are all distinct;
  converting them must put every value back into the tensor it came from, and the CLI's output must predict exactly
  like the model it came from.
"""

import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch import nn

from freemask.checkpoint import Checkpointer
from freemask.checkpoint.convert import (
    LAYOUTS,
    Split,
    apply_table,
    check_against_model,
    convert_checkpoint,
    model_state_from_config,
)
from freemask.checkpoint.convert.mmseg_segformer import LAYOUT as SEGFORMER
from freemask.checkpoint.convert.mmseg_segmenter import LAYOUT as SEGMENTER
from freemask.config import get_cfg
from freemask.modeling import build_model
from freemask.modeling.backbone.mix_transformer import MiTBlock

SEGFORMER_TOY = "configs/toy/semantic-segmentation/segformer_mit_b0_toy.yaml"
SEGMENTER_TOY = "configs/toy/semantic-segmentation/segmenter_vit_tiny_toy.yaml"
TOYS = (SEGFORMER_TOY, SEGMENTER_TOY)

# Release names and shapes for the toy models: MiT-B0 (widths 32/64/160/256, reduction 8/4/2/1, MLP ratio 4) with a
# 128-wide head and 6 classes; timm's test_vit (width 64, MLP ratio 3, patch 16) at the 128 crop (8x8 grid + class
# row) with a 64-wide mask transformer (MLP ratio 4).
EXPECTED = {
    SEGFORMER_TOY: {
        "backbone.layers.0.0.projection.weight": (32, 3, 7, 7),
        "backbone.layers.1.0.projection.weight": (64, 32, 3, 3),
        "backbone.layers.0.1.1.attn.attn.in_proj_weight": (96, 32),
        "backbone.layers.2.1.0.attn.attn.in_proj_bias": (480,),
        "backbone.layers.0.1.0.attn.sr.weight": (32, 32, 8, 8),
        "backbone.layers.2.1.1.attn.sr.weight": (160, 160, 2, 2),
        "backbone.layers.3.1.1.ffn.layers.0.weight": (1024, 256, 1, 1),
        "backbone.layers.3.1.1.ffn.layers.1.weight": (1024, 1, 3, 3),
        "backbone.layers.3.1.1.ffn.layers.4.weight": (256, 1024, 1, 1),
        "backbone.layers.3.2.weight": (256,),
        "decode_head.convs.0.conv.weight": (128, 32, 1, 1),
        "decode_head.convs.3.bn.running_var": (128,),
        "decode_head.fusion_conv.conv.weight": (128, 512, 1, 1),
        "decode_head.conv_seg.weight": (6, 128, 1, 1),
    },
    SEGMENTER_TOY: {
        "backbone.cls_token": (1, 1, 64),
        "backbone.pos_embed": (1, 65, 64),
        "backbone.patch_embed.projection.weight": (64, 3, 16, 16),
        "backbone.layers.5.attn.attn.in_proj_weight": (192, 64),
        "backbone.layers.5.ffn.layers.0.0.weight": (192, 64),
        "backbone.layers.5.ffn.layers.1.weight": (64, 192),
        "backbone.ln1.weight": (64,),
        "decode_head.cls_emb": (1, 6, 64),
        "decode_head.layers.1.ffn.layers.0.0.weight": (256, 64),
        "decode_head.layers.1.ln2.bias": (64,),
        "decode_head.dec_proj.weight": (64, 64),
        "decode_head.patch_proj.weight": (64, 64),
        "decode_head.mask_norm.weight": (6,),
    },
}

# The published models, from the "Name of parameter" lists of FreeMask's training logs
# (training-logs/ade20k_segformer_mit-b4_mIoU-50.6.log, ade20k_segmenter_vit-s_mIoU-47.9.log): a sample of names with
# their shapes, and the number of parameters (BatchNorm statistics are buffers, not listed).
SEGFORMER_B4 = "configs/ade20k/semantic-segmentation/segformer/segformer_mit_b4_bs16_160k.yaml"
SEGMENTER_VIT_S = "configs/ade20k/semantic-segmentation/segmenter/segmenter_vit_small_mask_bs8_160k.yaml"
PUBLISHED = {
    SEGFORMER_B4: (
        767,
        {
            "backbone.layers.0.0.projection.weight": (64, 3, 7, 7),
            "backbone.layers.0.1.0.attn.attn.in_proj_weight": (192, 64),
            "backbone.layers.0.1.0.attn.sr.weight": (64, 64, 8, 8),
            "backbone.layers.0.1.0.ffn.layers.0.weight": (256, 64, 1, 1),
            "backbone.layers.0.1.0.ffn.layers.1.weight": (256, 1, 3, 3),
            "backbone.layers.1.1.0.attn.sr.weight": (128, 128, 4, 4),
            "backbone.layers.2.1.26.attn.attn.in_proj_weight": (960, 320),
            "backbone.layers.2.1.26.ffn.layers.4.weight": (320, 1280, 1, 1),
            "backbone.layers.3.1.2.ffn.layers.0.weight": (2048, 512, 1, 1),
            "backbone.layers.3.2.weight": (512,),
            "decode_head.conv_seg.weight": (150, 256, 1, 1),
            "decode_head.convs.2.conv.weight": (256, 320, 1, 1),
            "decode_head.fusion_conv.conv.weight": (256, 1024, 1, 1),
        },
    ),
    SEGMENTER_VIT_S: (
        183,
        {
            "backbone.cls_token": (1, 1, 384),
            "backbone.pos_embed": (1, 1025, 384),
            "backbone.patch_embed.projection.weight": (384, 3, 16, 16),
            "backbone.layers.11.attn.attn.in_proj_weight": (1152, 384),
            "backbone.layers.0.ffn.layers.0.0.weight": (1536, 384),
            "backbone.ln1.weight": (384,),
            "decode_head.cls_emb": (1, 150, 384),
            "decode_head.layers.1.attn.attn.out_proj.weight": (384, 384),
            "decode_head.mask_norm.bias": (150,),
        },
    ),
}
_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
LAYOUT_OF = {SEGFORMER_TOY: SEGFORMER, SEGMENTER_TOY: SEGMENTER, SEGFORMER_B4: SEGFORMER, SEGMENTER_VIT_S: SEGMENTER}

# Single-key correspondences read off the MMSegmentation sources (the parts with positional names).
CORRESPONDENCES = [
    (SEGFORMER, "backbone.layers.2.0.projection.bias", "backbone.stages.2.patch_embed.proj.bias"),
    (SEGFORMER, "backbone.layers.1.0.norm.weight", "backbone.stages.1.patch_embed.norm.weight"),
    (SEGFORMER, "backbone.layers.1.1.3.norm2.bias", "backbone.stages.1.blocks.3.norm2.bias"),
    (SEGFORMER, "backbone.layers.1.1.3.attn.sr.weight", "backbone.stages.1.blocks.3.attn.sr.weight"),
    (SEGFORMER, "backbone.layers.0.1.1.attn.norm.bias", "backbone.stages.0.blocks.1.attn.norm.bias"),
    (SEGFORMER, "backbone.layers.0.1.0.attn.attn.out_proj.weight", "backbone.stages.0.blocks.0.attn.proj.weight"),
    (SEGFORMER, "backbone.layers.3.1.2.ffn.layers.1.weight", "backbone.stages.3.blocks.2.mlp.dwconv.weight"),
    (SEGFORMER, "backbone.layers.3.1.2.ffn.layers.4.bias", "backbone.stages.3.blocks.2.mlp.fc2.bias"),
    (SEGFORMER, "backbone.layers.2.2.weight", "backbone.stages.2.norm.weight"),
    (SEGFORMER, "decode_head.convs.3.bn.running_var", "sem_seg_head.convs.3.1.running_var"),
    (SEGFORMER, "decode_head.fusion_conv.conv.weight", "sem_seg_head.fusion_conv.0.weight"),
    (SEGFORMER, "decode_head.conv_seg.bias", "sem_seg_head.conv_seg.bias"),
    (SEGMENTER, "backbone.patch_embed.projection.weight", "backbone.vit.patch_embed.proj.weight"),
    (SEGMENTER, "backbone.ln1.bias", "backbone.vit.norm.bias"),
    (SEGMENTER, "backbone.layers.11.ln2.weight", "backbone.vit.blocks.11.norm2.weight"),
    (SEGMENTER, "backbone.layers.0.attn.attn.in_proj_bias", "backbone.vit.blocks.0.attn.qkv.bias"),
    (SEGMENTER, "backbone.layers.3.ffn.layers.1.weight", "backbone.vit.blocks.3.mlp.fc2.weight"),
    (SEGMENTER, "decode_head.layers.1.ffn.layers.0.0.weight", "sem_seg_head.blocks.1.mlp.fc1.weight"),
    (SEGMENTER, "decode_head.layers.0.attn.attn.out_proj.bias", "sem_seg_head.blocks.0.attn.proj.bias"),
    (SEGMENTER, "decode_head.decoder_norm.weight", "sem_seg_head.decoder_norm.weight"),
    (SEGMENTER, "decode_head.mask_norm.weight", "sem_seg_head.mask_norm.weight"),
]


@pytest.mark.parametrize("layout, source, ours", CORRESPONDENCES)
def test_release_names_map_to_ours(layout, source, ours):
    assert list(apply_table({source: torch.zeros(8)}, layout.table).tensors) == [ours]


def test_split_cuts_forward_and_joins_backwards():
    table = (Split("a.{i}.in_proj", ("b.{i}.q", "b.{i}.kv"), (1, 2)),)
    fused = torch.arange(12).reshape(6, 2)
    forward = apply_table({"a.3.in_proj": fused}, table)
    assert torch.equal(forward.tensors["b.3.q"], fused[:2]) and torch.equal(forward.tensors["b.3.kv"], fused[2:])
    back = apply_table({"b.3.kv": fused[2:], "b.3.q": fused[:2], "b.4.q": fused[:2]}, table, reverse=True)
    assert list(back.tensors) == ["a.3.in_proj"] and torch.equal(back.tensors["a.3.in_proj"], fused)
    assert back.unmatched == ["b.4.q"]  # its kv never came
    with pytest.raises(ValueError, match=r"a\.0\.in_proj: shape \(5, 2\) cannot be cut 1:2"):
        apply_table({"a.0.in_proj": torch.zeros(5, 2)}, table)
    with pytest.raises(ValueError, match="same variables"):
        Split("a.{i}.in_proj", ("b.{j}.q", "b.{i}.kv"), (1, 2))


def _randomized(module: nn.Module, seed: int) -> nn.Module:
    """``module`` in eval mode with every parameter random (biases and norm scales included)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    return module.eval()


def _load_converted(module: nn.Module, release: dict, layout, prefix: str) -> nn.Module:
    """Convert ``release`` with ``layout``'s table and load the tensors under ``prefix`` into ``module`` strictly."""
    mapped = apply_table(release, layout.table)
    assert not mapped.unmatched and not mapped.collisions
    module.load_state_dict({k.removeprefix(prefix): v for k, v in mapped.tensors.items()})
    return module.eval()


def _in_release_names(module: nn.Module, prefix: str, renames: dict[str, str]) -> dict:
    """``module``'s state dict with each top-level part renamed as the release names it, under ``prefix``."""
    release = {}
    for key, value in module.state_dict().items():
        part, rest = key.split(".", 1)
        release[f"{prefix}{renames.get(part, part)}.{rest}"] = value
    return release


def test_mit_block_computes_like_mmsegmentation():
    """An MMSegmentation MiT block: pre-norm efficient attention (keys/values from the map reduced by a strided conv
    and a LayerNorm, one ``nn.MultiheadAttention``), then Mix-FFN as 1x1 conv, 3x3 depth-wise conv, GELU, 1x1 conv."""
    dim, heads, ratio, hidden, (h, w) = 32, 2, 2, 128, (6, 4)
    parts = nn.ModuleDict(
        {
            "norm1": nn.LayerNorm(dim, eps=1e-6),
            "attn": nn.MultiheadAttention(dim, heads),
            "sr": nn.Conv2d(dim, dim, ratio, stride=ratio),
            "attn_norm": nn.LayerNorm(dim, eps=1e-6),
            "norm2": nn.LayerNorm(dim, eps=1e-6),
            "ffn": nn.Sequential(
                nn.Conv2d(dim, hidden, 1),
                nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden),
                nn.GELU(),
                nn.Dropout(0.0),
                nn.Conv2d(hidden, dim, 1),
                nn.Dropout(0.0),
            ),
        }
    )
    m = _randomized(parts, seed=0)
    x = torch.randn(2, h * w, dim)

    def as_map(t):
        return t.transpose(1, 2).reshape(t.shape[0], -1, h, w)

    y = m["norm1"](x)
    kv = m["attn_norm"](m["sr"](as_map(y)).flatten(2).transpose(1, 2))
    x1 = x + m["attn"](y.transpose(0, 1), kv.transpose(0, 1), kv.transpose(0, 1))[0].transpose(0, 1)
    expected = x1 + m["ffn"](as_map(m["norm2"](x1))).flatten(2).transpose(1, 2)

    renames = {"attn": "attn.attn", "attn_norm": "attn.norm", "sr": "attn.sr", "ffn": "ffn.layers"}
    release = _in_release_names(m, "backbone.layers.2.1.4.", renames)
    ours = _load_converted(MiTBlock(dim, heads, ratio, 4, 0.0), release, SEGFORMER, "backbone.stages.2.blocks.4.")
    torch.testing.assert_close(ours(x, (h, w)), expected)


def test_vit_layer_computes_like_mmsegmentation():
    """An MMSegmentation ViT / mask-transformer layer: ``x + attn(ln1(x))`` with ``nn.MultiheadAttention``, then
    ``x + fc2(gelu(fc1(ln2(x))))``."""
    dim, heads, hidden = 32, 4, 96
    parts = nn.ModuleDict(
        {
            "ln1": nn.LayerNorm(dim),
            "attn": nn.MultiheadAttention(dim, heads),
            "ln2": nn.LayerNorm(dim),
            "fc1": nn.Linear(dim, hidden),
            "fc2": nn.Linear(hidden, dim),
        }
    )
    m = _randomized(parts, seed=1)
    x = torch.randn(2, 7, dim)
    y = m["ln1"](x).transpose(0, 1)
    x1 = x + m["attn"](y, y, y)[0].transpose(0, 1)
    expected = x1 + m["fc2"](F.gelu(m["fc1"](m["ln2"](x1))))

    renames = {"attn": "attn.attn", "fc1": "ffn.layers.0.0", "fc2": "ffn.layers.1"}
    release = _in_release_names(m, "decode_head.layers.1.", renames)
    block = Block(dim, heads, mlp_ratio=hidden / dim, qkv_bias=True)
    ours = _load_converted(block, release, SEGMENTER, "sem_seg_head.blocks.1.")
    torch.testing.assert_close(ours(x), expected)


def toy_cfg(repo_root, config: str):
    cfg = get_cfg()
    cfg.merge_from_file(str(repo_root / config))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu"])
    return cfg


def numbered_like(state: dict) -> dict:
    """Same names and shapes, all values distinct integers: each tells the tensor and element it came from."""
    out, offset = {}, 0
    for key, value in state.items():
        out[key] = (torch.arange(value.numel(), dtype=torch.int32) + offset).reshape(value.shape)
        offset += value.numel()
    return out


def export(state: dict, layout) -> dict:
    """Our state dict in ``layout``'s names (its table read backwards); every key must have a rule."""
    mapped = apply_table(state, layout.table, reverse=True)
    assert not mapped.unmatched and not mapped.collisions, (mapped.unmatched, mapped.collisions)
    return mapped.tensors


def write_mmseg_pth(path, state_dict: dict) -> None:
    """An MMEngine-style checkpoint: the weights under "state_dict", meta data holding numpy scalars beside them."""
    meta = {"seed": np.int64(0), "iter": 160000, "dataset_meta": {"classes": ("a", "b")}}
    torch.save({"meta": meta, "state_dict": state_dict, "optimizer": {"state": {}, "param_groups": []}}, path)


@pytest.fixture(scope="module")
def toy_states(request):
    root = request.config.rootpath
    return {config: model_state_from_config(toy_cfg(root, config)) for config in TOYS}


@pytest.mark.parametrize("config", [SEGFORMER_TOY, SEGMENTER_TOY])
def test_every_value_lands_in_its_tensor(tmp_path, toy_states, config):
    layout = LAYOUT_OF[config]
    ours = numbered_like(toy_states[config])
    source = export(ours, layout)
    for key, shape in EXPECTED[config].items():
        assert tuple(source[key].shape) == shape, key
    extras = {}
    if layout is SEGMENTER:  # MMSegmentation versions before the head deleted it kept the unused classifier
        extras = {"decode_head.conv_seg.weight": torch.zeros(6, 64, 1, 1), "decode_head.conv_seg.bias": torch.zeros(6)}
    write_mmseg_pth(tmp_path / "iter_160000.pth", {**source, **extras})

    assert [lay.name for lay in LAYOUTS if lay.matches({"state_dict": source})] == [layout.name]
    report = convert_checkpoint(str(tmp_path / "iter_160000.pth"))
    assert report.layout == layout.name
    check_against_model(report, toy_states[config])
    assert report.problems() == [], report.summary()
    assert list(report.tensors) == list(ours)  # the model's order
    for key, expected in ours.items():
        assert torch.equal(report.tensors[key], expected), key
    assert sorted(k for keys in report.dropped.values() for k in keys) == sorted(extras)


@pytest.mark.parametrize("config", [SEGFORMER_B4, SEGMENTER_VIT_S])
def test_published_models_have_the_release_names_and_shapes(repo_root, config):
    """Our published-size configs, exported, carry the parameters the FreeMask logs list (checked on the meta device).

    The SegFormer head is MMSegmentation's 256 wide; the position table matches without resampling, as both
    codebases size it for the 512 training crop.
    """
    release = export(model_state_from_config(toy_cfg(repo_root, config)), LAYOUT_OF[config])
    num_parameters, shapes = PUBLISHED[config]
    assert len([k for k in release if not k.endswith(_BUFFERS)]) == num_parameters
    for key, shape in shapes.items():
        assert tuple(release[key].shape) == shape, key


def _perturbed_model(cfg, seed: int):
    """A model whose every float tensor (norm scales, biases, BN statistics) is off its initial value."""
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.add_(torch.randn_like(value) * 0.05)
    return model


def _predict(model, image):
    with torch.no_grad():
        return model([{"image": image, "height": 64, "width": 64}])[0]["sem_seg"]


@pytest.fixture(scope="module")
def cli_main(request):
    """``main`` of tools/convert_checkpoint.py, run in-process (argv in, exit code out)."""
    tool = request.config.rootpath / "tools" / "convert_checkpoint.py"
    spec = importlib.util.spec_from_file_location("convert_checkpoint_cli", tool)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.mark.parametrize("config, source_layout", [(SEGFORMER_TOY, "auto"), (SEGMENTER_TOY, "mmseg")])
def test_cli_end_to_end_predicts_like_the_exported_model(tmp_path, capsys, repo_root, cli_main, config, source_layout):
    cfg = toy_cfg(repo_root, config)
    original = _perturbed_model(cfg, seed=0)
    source = export({k: v.clone() for k, v in original.state_dict().items()}, LAYOUT_OF[config])
    write_mmseg_pth(tmp_path / "release.pth", source)
    dst = tmp_path / "converted" / "model.pth"
    args = [str(tmp_path / "release.pth"), str(dst), "--from", source_layout]
    assert cli_main([*args, "--config-file", str(repo_root / config), "MODEL.DEVICE", "cpu"]) == 0
    out = capsys.readouterr().out
    assert f"{LAYOUT_OF[config].name} layout" in out and "every model key is filled" in out

    loaded = _perturbed_model(cfg, seed=1)
    Checkpointer(loaded).load(str(dst))
    image = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
    assert torch.equal(_predict(loaded, image), _predict(original, image))


def test_a_fused_projection_of_the_wrong_size_is_one_clear_error(tmp_path, capsys, cli_main, toy_states):
    source = export(numbered_like(toy_states[SEGFORMER_TOY]), SEGFORMER)
    key = "backbone.layers.1.1.0.attn.attn.in_proj_weight"
    source[key] = source[key][:-1]
    path = tmp_path / "truncated.pth"
    write_mmseg_pth(path, source)

    assert cli_main([str(path), str(tmp_path / "out.pth")]) == 1
    err = capsys.readouterr().err
    assert not (tmp_path / "out.pth").exists()
    assert len(err.strip().splitlines()) == 1 and str(path) in err and key in err
