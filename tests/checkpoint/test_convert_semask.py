"""Conversion of official SeMask-FPN checkpoints (SeMask-Segmentation's SeMask-FPN, MMSegmentation 0.x).

Release-layout files are written here from our models by :func:`official_name`, a mapping spelled out from the
release's module names (``SeMaskSwinTransformer``, ``BranchFPNHead``) independently of the converter's table; the
converter must bring every value back to the tensor it came from, the converted file must load strictly and predict
exactly like the model it came from, and the published Swin-T / 150-class model must have the release's 265 tensors.
"""

import importlib.util
import re

import numpy as np
import pytest
import torch

from freemask.checkpoint.convert import LAYOUTS, check_against_model, convert_checkpoint, model_state_from_config
from freemask.checkpoint.convert.mmseg_semask import LAYOUT as SEMASK
from freemask.checkpoint.convert.rules import apply_table
from freemask.config import get_cfg
from freemask.modeling import build_model

TOY = "configs/toy/semantic-segmentation/semask_swin_tiny_toy.yaml"
SWIN_T_ADE = "configs/ade20k/semantic-segmentation/semask/semask_fpn_swin_tiny_bs16_80k.yaml"


def official_name(key: str) -> str:
    """Our state-dict name -> the release's (patch merging at the end of the previous stage, out norms ``norm{i}``,
    semantic layers inside each stage, the FPN towers as ``scale_heads`` of ConvModules)."""
    rules = [
        (r"backbone\.body\.patch_embed\.(.+)", lambda m: f"backbone.patch_embed.{m[1]}"),
        (r"backbone\.body\.layers_(\d)\.blocks\.(.+)", lambda m: f"backbone.layers.{m[1]}.blocks.{m[2]}"),
        (
            r"backbone\.body\.layers_(\d)\.downsample\.(.+)",
            lambda m: f"backbone.layers.{int(m[1]) - 1}.downsample.{m[2]}",
        ),
        (
            r"backbone\.semantic_layers\.(\d)\.norm\.(.+)",
            lambda m: f"backbone.layers.{m[1]}.semantic_layer.norm1.{m[2]}",
        ),
        (
            r"backbone\.semantic_layers\.(\d)\.attn\.(.+)",
            lambda m: f"backbone.layers.{m[1]}.semantic_layer.class_injection.0.{m[2]}",
        ),
        (r"backbone\.out_norms\.res(\d)\.(.+)", lambda m: f"backbone.norm{int(m[1]) - 2}.{m[2]}"),
        (r"sem_seg_head\.towers\.(\d)\.(\d)\.0\.(.+)", lambda m: f"decode_head.scale_heads.{m[1]}.{m[2]}.conv.{m[3]}"),
        (r"sem_seg_head\.towers\.(\d)\.(\d)\.1\.(.+)", lambda m: f"decode_head.scale_heads.{m[1]}.{m[2]}.bn.{m[3]}"),
        (r"sem_seg_head\.conv_seg\.(.+)", lambda m: f"decode_head.conv_seg.{m[1]}"),
    ]
    for pattern, name in rules:
        match = re.fullmatch(pattern, key)
        if match:
            return name(match)
    raise AssertionError(f"no release name for {key}")


def official_state(ours: dict, model_blocks_window: int) -> dict:
    """The release's state dict: our tensors under its names, plus its per-block relative-position-index buffers."""
    state = {official_name(k): v for k, v in ours.items()}
    area = model_blocks_window**2
    for key in [k for k in state if k.endswith(".attn.relative_position_bias_table")]:
        state[key.replace("relative_position_bias_table", "relative_position_index")] = torch.zeros(
            area, area, dtype=torch.long
        )
    return state


def write_release_pth(path, state_dict: dict) -> None:
    """An MMSegmentation 0.x / mmcv checkpoint: meta (with numpy values), state_dict, optimizer."""
    meta = {"mmseg_version": "0.11.0", "iter": 80000, "seed": np.int64(0), "CLASSES": ("a", "b")}
    torch.save({"meta": meta, "state_dict": state_dict, "optimizer": {"state": {}, "param_groups": []}}, path)


def toy_cfg(root, *opts):
    cfg = get_cfg()
    cfg.merge_from_file(str(root / TOY))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", *opts])
    return cfg


def perturbed_model(cfg, seed: int):
    """A model whose every float tensor (gates included, 0 at initialisation) is off its initial value."""
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.add_(torch.randn_like(value) * 0.05)
    return model


@pytest.fixture(scope="module")
def cli_main(request):
    """``main`` of tools/convert_checkpoint.py, run in-process (argv in, exit code out)."""
    spec = importlib.util.spec_from_file_location(
        "convert_checkpoint_cli", request.config.rootpath / "tools" / "convert_checkpoint.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_release_names_of_a_few_tensors():
    """Spelled out from the release's modules, so the inverse mapping above is pinned to them."""
    pairs = {
        "backbone.body.patch_embed.proj.weight": "backbone.patch_embed.proj.weight",
        "backbone.body.layers_2.blocks.5.attn.qkv.weight": "backbone.layers.2.blocks.5.attn.qkv.weight",
        "backbone.body.layers_1.downsample.reduction.weight": "backbone.layers.0.downsample.reduction.weight",
        "backbone.semantic_layers.3.norm.bias": "backbone.layers.3.semantic_layer.norm1.bias",
        "backbone.semantic_layers.2.attn.gamma": "backbone.layers.2.semantic_layer.class_injection.0.gamma",
        "backbone.out_norms.res5.weight": "backbone.norm3.weight",
        "sem_seg_head.towers.3.4.0.weight": "decode_head.scale_heads.3.4.conv.weight",
        "sem_seg_head.towers.0.0.1.running_var": "decode_head.scale_heads.0.0.bn.running_var",
        "sem_seg_head.conv_seg.bias": "decode_head.conv_seg.bias",
    }
    assert {ours: official_name(ours) for ours in pairs} == pairs


def test_published_swin_t_has_the_release_tensors(repo_root):
    """SeMask Swin-T, 150 classes: 265 tensors (244 parameters + 21 BatchNorm buffers of the 7 head convs) besides
    the 12 relative-position-index buffers; the table maps all of them onto our model, nothing left over."""
    cfg = get_cfg()
    cfg.merge_from_file(str(repo_root / SWIN_T_ADE))
    ours = model_state_from_config(cfg)
    release = official_state(ours, 7)
    assert len(release) == 265 + 12 and len([k for k in release if "relative_position_index" not in k]) == 265
    assert (
        len([k for k in release if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]) == 244 + 12
    )
    assert tuple(release["backbone.layers.2.semantic_layer.class_injection.0.mlp_cls_q.weight"].shape) == (150, 384)
    assert tuple(release["decode_head.scale_heads.3.0.conv.weight"].shape) == (256, 768, 3, 3)
    mapped = apply_table(release, SEMASK.table)
    assert not mapped.unmatched and not mapped.refused and not mapped.collisions
    assert sorted(k for keys in mapped.dropped.values() for k in keys) == sorted(
        k for k in release if "relative_position_index" in k
    )
    assert sorted(mapped.tensors) == sorted(ours)


def test_every_value_lands_in_its_tensor(tmp_path, repo_root):
    cfg = toy_cfg(repo_root)
    ours = {k: v for k, v in perturbed_model(cfg, seed=0).state_dict().items()}
    numbered = {}
    start = 0
    for key, value in ours.items():  # every element of every tensor distinct
        numbered[key] = (torch.arange(value.numel(), dtype=torch.float64) + start).reshape(value.shape).to(value.dtype)
        start += value.numel()
    write_release_pth(tmp_path / "semask.pth", official_state(numbered, 4))
    assert [lay.name for lay in LAYOUTS if lay.matches({"state_dict": official_state(numbered, 4)})] == [SEMASK.name]
    report = convert_checkpoint(str(tmp_path / "semask.pth"))
    assert report.layout == "mmseg_semask"
    check_against_model(report, model_state_from_config(cfg))
    assert report.problems() == [], report.summary()
    for key, expected in numbered.items():
        assert torch.equal(report.tensors[key], expected), key


def test_cli_converts_a_release_file_that_loads_strictly_and_predicts_the_same(tmp_path, capsys, repo_root, cli_main):
    cfg = toy_cfg(repo_root)
    original = perturbed_model(cfg, seed=0)
    write_release_pth(tmp_path / "release.pth", official_state(original.state_dict(), 4))
    dst = tmp_path / "converted" / "semask.pth"
    assert (
        cli_main(
            [str(tmp_path / "release.pth"), str(dst), "--config-file", str(repo_root / TOY), "MODEL.DEVICE", "cpu"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "mmseg_semask layout" in out and "every model key is filled" in out and "relative_position_index" in out

    loaded = perturbed_model(cfg, seed=1)
    loaded.load_state_dict(torch.load(dst, map_location="cpu", weights_only=True)["model"], strict=True)
    image = torch.randint(0, 256, (3, 70, 90), dtype=torch.uint8)
    with torch.no_grad():
        expected, got = (m([{"image": image, "height": 70, "width": 90}])[0]["sem_seg"] for m in (original, loaded))
    assert torch.equal(got, expected)


def test_a_second_semantic_block_is_refused_by_name(tmp_path, capsys, repo_root, cli_main):
    state = official_state(perturbed_model(toy_cfg(repo_root), seed=0).state_dict(), 4)
    extra = "backbone.layers.1.semantic_layer.class_injection.1.gamma"
    write_release_pth(tmp_path / "two_blocks.pth", {**state, extra: torch.zeros(1)})
    assert cli_main([str(tmp_path / "two_blocks.pth"), str(tmp_path / "out.pth")]) == 1
    captured = capsys.readouterr()
    assert extra in captured.out and "num_sem_blocks > 1" in captured.out and "not written" in captured.err
    assert not (tmp_path / "out.pth").exists()
