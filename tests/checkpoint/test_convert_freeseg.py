"""Conversion of FreeSeg stage-2 checkpoints (bytedance/FreeSeg, ``OpenVocabulary``; R50 and R101c backbones).

FreeSeg-layout files are written here from our tiny FreeSeg model by :func:`freeseg_name`, a mapping spelled out from
FreeSeg's module structure (``OpenVocabulary`` -> ``sem_seg_head`` = ``MaskFormerInteractionHead`` with
``pixel_decoder``, ``predictor`` and the ``interaction`` = ``ContextInteraction``; ``clip_adapter`` =
``MaskFormerClipAdapter`` with ``clip_model``, ``prompt_learner`` and ``non_object_embedding``; detectron2's ResNet
with its basic or DeepLab stem) independently of the converter's table, plus the buffers FreeSeg's files really carry.
The converter, run as the command line, must bring every value back to the tensor it came from and the result must
load strictly. The DeepLab ResNet (R101c) is also checked numerically against detectron2's computation written out
with functional ops from the detectron2-named tensors.
"""

import re

import pytest
import torch
import torch.nn.functional as F
from script_runner import run_script

from freemask.checkpoint import Checkpointer
from freemask.checkpoint.convert import apply_table
from freemask.checkpoint.convert.freeseg import LAYOUT as FREESEG
from freemask.config import get_cfg
from freemask.modeling import build_model
from freemask.modeling.backbone.timm_backbone import TimmBackbone

TOY = "configs/toy/open-vocabulary/freeseg_R18_toy_alltask.yaml"
# FreeSeg's backbones as the toy model builds them: FrozenBN as detectron2's default norm (FreeSeg's configs keep
# it), R101c = timm's deep-stem ResNet-101 with res5 multi-grid 1, 2, 4 (FreeSeg's RES5_MULTI_GRID).
BACKBONES = {
    "basic stem (R50-like)": ["MODEL.BACKBONE.TIMM_NAME", "resnet18"],
    "DeepLab stem (R101c)": ["MODEL.BACKBONE.TIMM_NAME", "resnet101s", "MODEL.BACKBONE.RES5_MULTI_GRID", "[1, 2, 4]"],
}
COMMON = ["MODEL.BACKBONE.NORM", "FrozenBN"]

_DEEPLAB_STEM = {"conv1.0": "conv1", "conv1.1": "conv1.norm", "conv1.3": "conv2", "conv1.4": "conv2.norm"}
_DEEPLAB_STEM.update({"conv1.6": "conv3", "bn1": "conv3.norm"})
_INTERACTION = {"pixel_norm": "layer_norm_q_1", "text_norm": "layer_norm_k_1", "gamma": "gamma"}
_INTERACTION.update({f"{p}_proj": f"attn.{p}_proj" for p in ("q", "k", "v", "out")})


def freeseg_name(key: str, deeplab_stem: bool) -> str:
    """Our state-dict name -> FreeSeg's."""
    stem = r"backbone\.body\.(conv1\.[0-9]|bn1)\.(.+)" if deeplab_stem else r"backbone\.body\.(conv1|bn1)\.(.+)"
    basic_stem = {"conv1": "conv1", "bn1": "conv1.norm"}
    block = r"backbone\.body\.layer(\d)\.(\d+)\."  # detectron2: res{stage + 1}, norms nested in their conv
    rules = [
        (stem, lambda m: f"backbone.stem.{(_DEEPLAB_STEM if deeplab_stem else basic_stem)[m[1]]}.{m[2]}"),
        (block + r"conv(\d)\.(.+)", lambda m: f"backbone.res{int(m[1]) + 1}.{m[2]}.conv{m[3]}.{m[4]}"),
        (block + r"bn(\d)\.(.+)", lambda m: f"backbone.res{int(m[1]) + 1}.{m[2]}.conv{m[3]}.norm.{m[4]}"),
        (block + r"downsample\.0\.(.+)", lambda m: f"backbone.res{int(m[1]) + 1}.{m[2]}.shortcut.{m[3]}"),
        (block + r"downsample\.1\.(.+)", lambda m: f"backbone.res{int(m[1]) + 1}.{m[2]}.shortcut.norm.{m[3]}"),
        (r"pixel_decoder\.(.+)", lambda m: f"sem_seg_head.pixel_decoder.{m[1]}"),
        (r"transformer_decoder\.(.+)", lambda m: f"sem_seg_head.predictor.{m[1]}"),
        (r"interaction\.([a-z_]+)(.*)", lambda m: f"sem_seg_head.interaction.{_INTERACTION[m[1]]}{m[2]}"),
        (r"clip\.model\.(.+)", lambda m: f"clip_adapter.clip_model.{m[1]}"),
        (r"prompt_learner\.(.+)", lambda m: f"clip_adapter.prompt_learner.{m[1]}"),
        (r"no_object_embedding", lambda m: "clip_adapter.non_object_embedding"),
    ]
    for pattern, name in rules:
        m = re.fullmatch(pattern, key)
        if m:
            return name(m)
    raise AssertionError(f"{key}: no FreeSeg name")


def toy_cfg(repo_root, backbone: str):
    cfg = get_cfg()
    cfg.merge_from_file(str(repo_root / TOY))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", *COMMON, *BACKBONES[backbone]])
    return cfg


def randomised_model(cfg, seed: int):
    """A model whose every float tensor holds seeded random values (FrozenBN variances positive)."""
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if value.is_floating_point():
                value.copy_(torch.rand_like(value) + 0.5 if key.endswith("running_var") else torch.randn_like(value))
    return model


def freeseg_checkpoint(ours: dict, deeplab_stem: bool, num_classes: int) -> dict:
    """FreeSeg's ``{"model": ...}`` for our state dict: its names, without our step counter, with the buffers of
    FreeSeg's prompt learner (CLIP token embeddings), of its CLIP adapter (CLIP's mean / std) and of its criterion."""
    width = ours["prompt_learner.prefix_prompt"].shape[1]
    model = {freeseg_name(k, deeplab_stem): v.clone() for k, v in ours.items() if k != "train_step"}
    assert not any(k.endswith("num_batches_tracked") for k in model)  # FrozenBN, as FreeSeg's
    for signal in ("start", "dot", "end", "pad"):
        model[f"clip_adapter.prompt_learner.{signal}_signal"] = torch.randn(1, width)
    model["clip_adapter.pixel_mean"] = torch.tensor([122.7709, 116.7460, 104.0937]).view(1, 3, 1, 1)
    model["clip_adapter.pixel_std"] = torch.tensor([68.5005, 66.6322, 70.3232]).view(1, 3, 1, 1)
    model["criterion.empty_weight"] = torch.ones(num_classes + 1)
    return {"model": model, "iteration": 59999}


# Names and shapes FreeSeg's files have (bytedance/FreeSeg module structure), in the toy model's sizes.
EXPECTED = {
    "basic stem (R50-like)": {
        "backbone.stem.conv1.weight": (64, 3, 7, 7),
        "backbone.stem.conv1.norm.running_var": (64,),
        "backbone.res3.0.shortcut.norm.bias": (128,),
    },
    "DeepLab stem (R101c)": {
        "backbone.stem.conv1.weight": (64, 3, 3, 3),
        "backbone.stem.conv2.norm.weight": (64,),
        "backbone.stem.conv3.weight": (128, 64, 3, 3),
        "backbone.stem.conv3.norm.running_mean": (128,),
        "backbone.res2.0.shortcut.weight": (256, 128, 1, 1),
        "backbone.res4.22.conv3.norm.bias": (1024,),
        "backbone.res5.2.conv2.weight": (512, 512, 3, 3),
    },
}
EXPECTED_HEAD = {
    "sem_seg_head.interaction.layer_norm_q_1.weight": (64,),
    "sem_seg_head.interaction.layer_norm_k_1.bias": (64,),
    "sem_seg_head.interaction.attn.q_proj.weight": (128, 64),
    "sem_seg_head.interaction.attn.out_proj.bias": (64,),
    "sem_seg_head.interaction.gamma": (64,),
    "sem_seg_head.predictor.class_embed.layers.1.weight": (64, 128),
    "clip_adapter.clip_model.visual.transformer.resblocks.1.attn.in_proj_weight": (192, 64),
    "clip_adapter.clip_model.token_embedding.weight": (49408, 64),
    "clip_adapter.prompt_learner.prefix_prompt": (16, 64),
    "clip_adapter.prompt_learner.task_prompt": (8, 64),
    "clip_adapter.non_object_embedding": (1, 64),
}


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_freeseg_checkpoint_converts_and_loads_strictly(tmp_path, repo_root, backbone):
    cfg = toy_cfg(repo_root, backbone)
    ours = {k: v.clone() for k, v in randomised_model(cfg, seed=0).state_dict().items()}
    release = freeseg_checkpoint(ours, deeplab_stem="DeepLab" in backbone, num_classes=4)
    for key, shape in {**EXPECTED[backbone], **EXPECTED_HEAD}.items():
        assert tuple(release["model"][key].shape) == shape, key
    source, dst = tmp_path / "model_final.pth", tmp_path / "converted.pth"
    torch.save(release, source)

    cmd = ["tools/convert_checkpoint.py", source, dst, "--config-file", TOY, *COMMON, *BACKBONES[backbone]]
    run = run_script(cmd, cwd=repo_root, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "freeseg layout" in run.stdout and "every model key is filled" in run.stdout
    assert "CLIP_WEIGHTS may be left empty" in run.stdout
    for dropped in ("start_signal", "pixel_mean", "criterion.empty_weight"):
        assert dropped in run.stdout  # dropped, with its reason, on the report

    loaded = randomised_model(cfg, seed=1)
    Checkpointer(loaded, strict=True).load(str(dst))
    state = loaded.state_dict()
    assert set(torch.load(dst, weights_only=True)["model"]) == set(state)
    assert state["train_step"].item() == 0
    for key, value in state.items():
        if key != "train_step":
            assert torch.equal(value, release["model"][freeseg_name(key, "DeepLab" in backbone)]), key


# ------------------------------------------------------------------ R101c against detectron2's DeepLab ResNet
_R101_BLOCKS = (3, 4, 23, 3)
_MULTI_GRID = (1, 2, 4)


def detectron2_deeplab_r101(generator: torch.Generator) -> dict:
    """Random tensors under detectron2's names and shapes for FreeSeg's R101c (facebookresearch/detectron2,
    projects/DeepLab/deeplab/resnet.py, ``build_resnet_deeplab_backbone``: DeepLab stem of STEM_OUT_CHANNELS 128,
    bottleneck blocks 3-4-23-3, FrozenBN), scaled so that 33 blocks keep activations of order 1."""
    state = {}

    def conv(name, out_c, in_c, k):
        fan_in = in_c * k * k
        state[f"backbone.{name}.weight"] = torch.randn(out_c, in_c, k, k, generator=generator) * (1.0 / fan_in) ** 0.5
        norm = f"backbone.{name}.norm"
        state[f"{norm}.weight"] = torch.rand(out_c, generator=generator) * 0.5 + 0.5
        state[f"{norm}.bias"] = torch.randn(out_c, generator=generator) * 0.1
        state[f"{norm}.running_mean"] = torch.randn(out_c, generator=generator) * 0.1
        state[f"{norm}.running_var"] = torch.rand(out_c, generator=generator) + 0.5

    conv("stem.conv1", 64, 3, 3)
    conv("stem.conv2", 64, 64, 3)
    conv("stem.conv3", 128, 64, 3)
    in_c, bottleneck, out_c = 128, 64, 256
    for stage, blocks in enumerate(_R101_BLOCKS, start=2):
        for b in range(blocks):
            prefix = f"res{stage}.{b}"
            if b == 0:
                conv(f"{prefix}.shortcut", out_c, in_c, 1)
            conv(f"{prefix}.conv1", bottleneck, in_c if b == 0 else out_c, 1)
            conv(f"{prefix}.conv2", bottleneck, bottleneck, 3)
            conv(f"{prefix}.conv3", out_c, bottleneck, 1)
        in_c, bottleneck, out_c = out_c, bottleneck * 2, out_c * 2
    return state


def detectron2_forward(state: dict, x: torch.Tensor) -> dict:
    """detectron2's DeepLab ResNet step by step: ``DeepLabStem.forward`` (three conv + FrozenBN + ReLU, 3x3 max pool
    of stride 2), then ``BottleneckBlock.forward`` with STRIDE_IN_1X1 False (the stride in the 3x3, as FreeSeg's
    R101c config sets), RES5_DILATION 1 (detectron2's default; FreeSeg's config leaves it) so res5 keeps its stride
    2, and res5's 3x3 dilations RES5_MULTI_GRID 1, 2, 4 (padding = dilation)."""

    def conv_bn(x, name, stride=1, padding=0, dilation=1):
        p = f"backbone.{name}"
        x = F.conv2d(x, state[f"{p}.weight"], stride=stride, padding=padding, dilation=dilation)
        scale = state[f"{p}.norm.weight"] * (state[f"{p}.norm.running_var"] + 1e-5).rsqrt()
        shift = state[f"{p}.norm.bias"] - state[f"{p}.norm.running_mean"] * scale
        return x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)

    x = F.relu(conv_bn(x, "stem.conv1", stride=2, padding=1))
    x = F.relu(conv_bn(x, "stem.conv2", padding=1))
    x = F.relu(conv_bn(x, "stem.conv3", padding=1))
    x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
    features = {}
    for stage, blocks in enumerate(_R101_BLOCKS, start=2):
        for b in range(blocks):
            prefix = f"res{stage}.{b}"
            stride = 2 if b == 0 and stage > 2 else 1
            dilation = _MULTI_GRID[b] if stage == 5 else 1
            shortcut = conv_bn(x, f"{prefix}.shortcut", stride=stride) if b == 0 else x
            y = F.relu(conv_bn(x, f"{prefix}.conv1"))
            y = F.relu(conv_bn(y, f"{prefix}.conv2", stride=stride, padding=dilation, dilation=dilation))
            x = F.relu(conv_bn(y, f"{prefix}.conv3") + shortcut)
        features[f"res{stage}"] = x
    return features


def converted_backbone(state: dict, multi_grid) -> TimmBackbone:
    """Our R101c (configs/common/backbones/R101c.yaml's arguments) loaded strictly with the converted tensors."""
    mapped = apply_table(state, FREESEG.table_for(list(state)))
    assert not (mapped.unmatched or mapped.refused or mapped.collisions or mapped.dropped)
    backbone = TimmBackbone("resnet101s", norm="FrozenBN", res5_multi_grid=multi_grid).eval()
    body = {k.removeprefix("backbone."): v for k, v in mapped.tensors.items()}
    backbone.load_state_dict(body, strict=True)
    return backbone


def test_r101c_matches_detectron2_deeplab_resnet():
    generator = torch.Generator().manual_seed(0)
    state = detectron2_deeplab_r101(generator)
    image = torch.randn(1, 3, 128, 160, generator=generator)
    with torch.no_grad():
        want = detectron2_forward(state, image)
        got = converted_backbone(state, _MULTI_GRID)(image)
        for name in ("res2", "res3", "res4", "res5"):
            assert got[name].shape == want[name].shape, name
            torch.testing.assert_close(got[name], want[name], atol=1e-4, rtol=1e-4, msg=name)
        # The comparison sees res5's dilations: without multi-grid the same weights give other features.
        undilated = converted_backbone(state, ())(image)["res5"]
    assert (undilated - want["res5"]).abs().max() > 1e-2
