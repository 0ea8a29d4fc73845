"""Checkpoint conversion from the official detectron2 and FreeMask's MMSegmentation layouts to ours.

Release-layout state dicts are made by reading our tables backwards on a model's state dict whose values are all
distinct, then carrying the extras real files have (buffers, loss weights, training state). Converting them back must
put every value into the tensor it came from. The key names the files must have are spelled out independently, from
the release sources, so a table that is wrong in both directions still fails.
"""

import importlib.util
import os
import pickle
import sys
import types

import numpy as np
import pytest
import torch
from script_runner import run_script

from freemask.checkpoint import Checkpointer
from freemask.checkpoint.convert import (
    apply_table,
    check_against_model,
    convert_checkpoint,
    model_state_from_config,
)
from freemask.checkpoint.convert.detectron2_mask2former import LAYOUT as D2
from freemask.checkpoint.convert.mmseg_mask2former import LAYOUT as MMSEG
from freemask.config import get_cfg
from freemask.modeling import build_model

SWIN_T = "swin_tiny_patch4_window7_224"
R50 = "resnet50"

# Names the release files have (from the official Mask2Former / mmseg + mmdet sources), with shapes where the shape
# pins down an ordering (coarsest level first for input projections; the FPN lateral takes the stride-4 map).
EXPECTED = {
    ("detectron2", R50): {
        "backbone.stem.conv1.weight": (64, 3, 7, 7),
        "backbone.stem.conv1.norm.running_var": (64,),
        "backbone.res2.0.shortcut.weight": (256, 64, 1, 1),
        "backbone.res2.0.shortcut.norm.bias": (256,),
        "backbone.res5.2.conv3.norm.weight": (2048,),
        "sem_seg_head.pixel_decoder.input_proj.0.0.weight": (64, 2048, 1, 1),
        "sem_seg_head.pixel_decoder.adapter_1.weight": (64, 256, 1, 1),
        "sem_seg_head.pixel_decoder.adapter_1.norm.weight": (64,),
        "sem_seg_head.pixel_decoder.transformer.level_embed": (3, 64),
        "sem_seg_head.predictor.transformer_ffn_layers.2.linear2.bias": (64,),
        "sem_seg_head.predictor.mask_embed.layers.2.weight": (64, 64),
    },
    ("detectron2", SWIN_T): {
        "backbone.patch_embed.proj.weight": (96, 3, 4, 4),
        "backbone.patch_embed.norm.weight": (96,),
        "backbone.layers.0.blocks.1.attn.relative_position_bias_table": (169, 3),
        "backbone.layers.0.downsample.reduction.weight": (192, 384),
        "backbone.layers.2.downsample.norm.weight": (1536,),
        "backbone.layers.3.blocks.1.mlp.fc2.weight": (768, 3072),
        "backbone.norm0.weight": (96,),
        "backbone.norm3.bias": (768,),
    },
    ("mmseg", R50): {
        "backbone.conv1.weight": (64, 3, 7, 7),
        "backbone.bn1.running_mean": (64,),
        "backbone.layer1.0.downsample.1.weight": (256,),
        "backbone.layer4.2.bn3.bias": (2048,),
        "decode_head.pixel_decoder.input_convs.0.conv.weight": (64, 2048, 1, 1),
        "decode_head.pixel_decoder.input_convs.2.gn.bias": (64,),
        "decode_head.pixel_decoder.lateral_convs.0.conv.weight": (64, 256, 1, 1),
    },
    ("mmseg", SWIN_T): {
        "backbone.patch_embed.projection.weight": (96, 3, 4, 4),
        "backbone.stages.0.blocks.0.attn.w_msa.qkv.weight": (288, 96),
        "backbone.stages.1.blocks.1.attn.w_msa.relative_position_bias_table": (169, 6),
        "backbone.stages.0.blocks.1.ffn.layers.0.0.weight": (384, 96),
        "backbone.stages.2.blocks.5.ffn.layers.1.bias": (384,),
        "backbone.stages.2.downsample.reduction.weight": (768, 1536),
        "backbone.norm0.weight": (96,),
        "decode_head.pixel_decoder.input_convs.0.conv.weight": (64, 768, 1, 1),
        "decode_head.pixel_decoder.level_encoding.weight": (3, 64),
        "decode_head.pixel_decoder.encoder.layers.1.self_attn.sampling_offsets.weight": (192, 64),
        "decode_head.pixel_decoder.encoder.layers.1.norms.1.weight": (64,),
        "decode_head.pixel_decoder.encoder.layers.0.ffn.layers.0.0.weight": (128, 64),
        "decode_head.pixel_decoder.lateral_convs.0.conv.weight": (64, 96, 1, 1),
        "decode_head.pixel_decoder.output_convs.0.gn.bias": (64,),
        "decode_head.pixel_decoder.mask_feature.weight": (64, 64, 1, 1),
        "decode_head.transformer_decoder.layers.0.cross_attn.attn.in_proj_weight": (192, 64),
        "decode_head.transformer_decoder.layers.1.self_attn.attn.out_proj.bias": (64,),
        "decode_head.transformer_decoder.layers.2.norms.2.weight": (64,),
        "decode_head.transformer_decoder.layers.2.ffn.layers.1.weight": (64, 256),
        "decode_head.transformer_decoder.post_norm.weight": (64,),
        "decode_head.query_feat.weight": (20, 64),
        "decode_head.level_embed.weight": (3, 64),
        "decode_head.cls_embed.weight": (5, 64),
        "decode_head.mask_embed.4.weight": (64, 64),
    },
}


# Single-key correspondences read off the release sources (the subtle ones: orders, offsets, stage shifts).
CORRESPONDENCES = [
    (D2, "backbone.res3.1.conv2.norm.running_mean", "backbone.body.layer2.1.bn2.running_mean"),
    (D2, "backbone.res4.0.shortcut.norm.weight", "backbone.body.layer3.0.downsample.1.weight"),
    (D2, "backbone.layers.1.downsample.reduction.weight", "backbone.body.layers_2.downsample.reduction.weight"),
    (D2, "backbone.norm1.bias", "backbone.out_norms.res3.bias"),
    (D2, "sem_seg_head.predictor.query_embed.weight", "transformer_decoder.query_embed.weight"),
    (MMSEG, "backbone.stages.0.downsample.norm.bias", "backbone.body.layers_1.downsample.norm.bias"),
    (MMSEG, "backbone.stages.2.blocks.3.ffn.layers.1.weight", "backbone.body.layers_2.blocks.3.mlp.fc2.weight"),
    (MMSEG, "backbone.norm2.weight", "backbone.out_norms.res4.weight"),
    (
        MMSEG,
        "decode_head.pixel_decoder.encoder.layers.3.norms.0.bias",
        "pixel_decoder.transformer.encoder.layers.3.norm1.bias",
    ),
    (MMSEG, "decode_head.pixel_decoder.lateral_convs.0.gn.weight", "pixel_decoder.adapter_1.norm.weight"),
    (MMSEG, "decode_head.pixel_decoder.output_convs.0.conv.weight", "pixel_decoder.layer_1.weight"),
    (MMSEG, "decode_head.pixel_decoder.input_convs.1.gn.weight", "pixel_decoder.input_proj.1.1.weight"),
    (
        MMSEG,
        "decode_head.transformer_decoder.layers.4.norms.0.weight",
        "transformer_decoder.transformer_cross_attention_layers.4.norm.weight",
    ),
    (
        MMSEG,
        "decode_head.transformer_decoder.layers.4.norms.1.weight",
        "transformer_decoder.transformer_self_attention_layers.4.norm.weight",
    ),
    (
        MMSEG,
        "decode_head.transformer_decoder.layers.4.norms.2.weight",
        "transformer_decoder.transformer_ffn_layers.4.norm.weight",
    ),
    (
        MMSEG,
        "decode_head.transformer_decoder.layers.4.ffn.layers.0.0.bias",
        "transformer_decoder.transformer_ffn_layers.4.linear1.bias",
    ),
    (MMSEG, "decode_head.mask_embed.2.bias", "transformer_decoder.mask_embed.layers.1.bias"),
    (MMSEG, "decode_head.decoder_input_projs.2.weight", "transformer_decoder.input_proj.2.weight"),
]


@pytest.mark.parametrize("layout, source, ours", CORRESPONDENCES)
def test_release_names_map_to_ours(layout, source, ours):
    assert list(apply_table({source: torch.zeros(8)}, layout.table).tensors) == [ours]


def toy_cfg(repo_root, timm_name: str = "resnet18"):
    """The toy Mask2Former (64-d decoders, 2 encoder and 3 decoder layers, 20 queries), 4 classes, on CPU."""
    cfg = get_cfg()
    cfg.merge_from_file(str(repo_root / "configs" / "toy" / "semantic-segmentation" / "mask2former_R18_toy.yaml"))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "4"])
    cfg.merge_from_list(["MODEL.BACKBONE.TIMM_NAME", timm_name])
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


def write_detectron2_pkl(path, model: dict) -> None:
    """A detectron2 model-zoo style .pkl: numpy arrays under "model", plus its two bookkeeping entries."""
    data = {"model": {k: v.numpy() for k, v in model.items()}, "__author__": "test", "matching_heuristics": True}
    with open(path, "wb") as f:
        pickle.dump(data, f)


def write_mmseg_pth(path, state_dict: dict, monkeypatch) -> None:
    """An MMEngine-style checkpoint: meta with numpy values and a message hub holding a foreign class's object."""
    module = types.ModuleType("mmengine_fake.history_buffer")

    class HistoryBuffer:
        def __init__(self):
            self.log = np.arange(4.0)

    HistoryBuffer.__module__, HistoryBuffer.__qualname__ = module.__name__, "HistoryBuffer"
    module.HistoryBuffer = HistoryBuffer
    monkeypatch.setitem(sys.modules, "mmengine_fake", types.ModuleType("mmengine_fake"))
    monkeypatch.setitem(sys.modules, module.__name__, module)
    meta = {"seed": np.int64(0), "dataset_meta": {"classes": ("a", "b")}, "iter": 160000}
    torch.save({"meta": meta, "state_dict": state_dict, "message_hub": {"loss": HistoryBuffer()}}, path)
    monkeypatch.delitem(sys.modules, module.__name__)  # reading must not need (or import) the class


def release_file(tmp_path, monkeypatch, family: str, timm_name: str, ours: dict, suffix: str):
    """Write ``ours`` as a release file of ``family``, with the extra keys such files really carry."""
    layout = D2 if family == "detectron2" else MMSEG
    source = export(ours, layout)
    swin = timm_name == SWIN_T
    if family == "detectron2":
        source = {k: v for k, v in source.items() if not k.endswith("num_batches_tracked")}  # FrozenBN: no counters
        source["criterion.empty_weight"] = torch.ones(5)
        if swin:
            source["backbone.layers.0.blocks.0.attn.relative_position_index"] = torch.zeros(49, 49, dtype=torch.long)
            source["backbone.layers.0.blocks.1.attn_mask"] = torch.zeros(64, 49, 49)
    elif swin:
        source["backbone.stages.1.blocks.1.attn.w_msa.relative_position_index"] = torch.zeros(49, 49, dtype=torch.long)
    path = tmp_path / f"release{suffix}"
    if suffix == ".pkl":
        write_detectron2_pkl(path, source)
    elif family == "detectron2":
        torch.save({"model": source, "iteration": 5}, path)
    else:
        write_mmseg_pth(path, source, monkeypatch)
    return source, path


@pytest.fixture(scope="module")
def meta_states(request):
    root = request.config.rootpath
    return {name: model_state_from_config(toy_cfg(root, name)) for name in (R50, SWIN_T)}


@pytest.mark.parametrize(
    "family, timm_name, suffix",
    [("detectron2", R50, ".pkl"), ("detectron2", SWIN_T, ".pth"), ("mmseg", R50, ".pth"), ("mmseg", SWIN_T, ".pth")],
)
def test_every_value_lands_in_its_tensor(tmp_path, monkeypatch, meta_states, family, timm_name, suffix):
    ours = numbered_like(meta_states[timm_name])
    source, path = release_file(tmp_path, monkeypatch, family, timm_name, ours, suffix)
    for key, shape in EXPECTED[(family, timm_name)].items():
        assert tuple(source[key].shape) == shape, key

    report = convert_checkpoint(str(path))
    assert report.layout == ("detectron2_mask2former" if family == "detectron2" else "mmseg_mask2former")
    check_against_model(report, meta_states[timm_name])
    assert report.problems() == [], report.summary()
    assert list(report.tensors) == list(ours)  # the model's order
    counters = [k for k in ours if k.endswith("num_batches_tracked")]
    assert report.counters_added == (counters if family == "detectron2" else [])
    for key, expected in ours.items():
        got = report.tensors[key]
        if key in report.counters_added:
            assert got.item() == 0
        else:
            assert torch.equal(got, expected), key
    if family == "mmseg":
        assert "mmengine_fake.history_buffer.HistoryBuffer" in report.ignored_objects
    dropped = sorted(k for keys in report.dropped.values() for k in keys)
    assert dropped == sorted(set(source) - set(export(ours, D2 if family == "detectron2" else MMSEG)))


@pytest.fixture
def cli_main(repo_root):
    """``main`` of tools/convert_checkpoint.py, run in-process (argv in, exit code out)."""
    spec = importlib.util.spec_from_file_location(
        "convert_checkpoint_tool", repo_root / "tools" / "convert_checkpoint.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_leftovers_are_listed_and_nothing_is_written(tmp_path, capsys, meta_states, repo_root, cli_main):
    source = export(numbered_like(meta_states[R50]), MMSEG)
    source["decode_head.conv_seg.weight"] = torch.zeros(4, 64, 1, 1)  # a head part our model does not have
    source["backbone.stem.0.weight"] = torch.zeros(32, 3, 3, 3)  # ResNetV1c deep stem
    del source["decode_head.query_feat.weight"]
    source["decode_head.cls_embed.bias"] = torch.zeros(151)  # trained for another number of classes
    path, dst = tmp_path / "mmseg.pth", tmp_path / "out.pth"
    torch.save({"state_dict": source, "meta": {}}, path)
    config = ["--config-file", str(repo_root / "configs/toy/semantic-segmentation/mask2former_R18_toy.yaml")]
    overrides = ["MODEL.BACKBONE.TIMM_NAME", R50, "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "4"]

    rc = cli_main([str(path), str(dst), *config, *overrides])
    out, err = capsys.readouterr()
    assert rc == 1 and not dst.exists()
    assert "decode_head.conv_seg.weight" in out and "deep stem" in out and "backbone.stem.0.weight" in out
    assert "transformer_decoder.query_feat.weight" in out  # a model key no source key filled
    assert "transformer_decoder.class_embed.bias: file (151,) vs model (5,)" in out
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such file"),
        (b"", "empty"),
        (b"\x80\x04garbage", "corrupt"),
        (b"PK\x03\x04 not really a zip", "corrupt"),
        ({"model": {"head.fc.weight": torch.zeros(2)}}, "not a layout this tool knows"),
        (
            {"model": {"transformer_decoder.transformer_cross_attention_layers.0.norm.weight": torch.zeros(2)}},
            "already",
        ),
        ([1, 2], "not a checkpoint dictionary"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, capsys, cli_main, content, message):
    path = tmp_path / "in.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    rc = cli_main([str(path), str(tmp_path / "out.pth")])
    err = capsys.readouterr().err
    assert rc == 1 and not (tmp_path / "out.pth").exists()
    assert len(err.strip().splitlines()) == 1 and message in err and str(path) in err


def test_pkl_with_code_is_refused(tmp_path, capsys, cli_main):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "model_final.pkl"
    path.write_bytes(pickle.dumps({"model": {"backbone.stem.conv1.weight": Payload()}}))
    rc = cli_main([str(path), str(tmp_path / "out.pth")])
    err = capsys.readouterr().err
    assert rc == 1 and not marker.exists()
    assert "system" in err and "refusing" in err and len(err.strip().splitlines()) == 1


def _perturbed_model(cfg, seed: int):
    """A model whose every float tensor (norm scales and biases included) is off its initial value."""
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


def _load_like_train_net(cfg, path):
    """A fresh model loaded with our Checkpointer (weights_only), after checking key equality strictly."""
    model = _perturbed_model(cfg, seed=1)
    saved = torch.load(path, map_location="cpu", weights_only=True)
    assert set(saved) == {"model"} and set(saved["model"]) == set(model.state_dict())
    Checkpointer(model).load(str(path))
    return model


def test_cli_end_to_end_detectron2_pkl_predicts_like_the_exported_model(tmp_path, repo_root):
    cfg = toy_cfg(repo_root)
    original = _perturbed_model(cfg, seed=0)
    source = export({k: v.clone() for k, v in original.state_dict().items()}, D2)
    write_detectron2_pkl(tmp_path / "model_final.pkl", {k: v for k, v in source.items() if "num_batches" not in k})
    dst = tmp_path / "converted" / "m2f.pth"
    cmd = ["tools/convert_checkpoint.py", str(tmp_path / "model_final.pkl"), str(dst)]
    cmd += ["--config-file", "configs/toy/semantic-segmentation/mask2former_R18_toy.yaml"]
    cmd += ["MODEL.SEM_SEG_HEAD.NUM_CLASSES", "4"]
    run = run_script(cmd, cwd=repo_root, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "every model key is filled" in run.stdout

    image = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
    assert torch.equal(_predict(_load_like_train_net(cfg, dst), image), _predict(original, image))


@pytest.mark.parametrize(
    "config, num_classes, thing_ids",
    [("panoptic-segmentation/mask2former_R18_toy_panoptic.yaml", 133, range(80)),
     ("instance-segmentation/mask2former_R18_toy_instance.yaml", 80, range(80))],
)
def test_cli_converts_official_panoptic_and_instance_checkpoints(tmp_path, repo_root, config, num_classes, thing_ids):
    """Official COCO panoptic (133 classes) / instance (80) checkpoints have the semantic ones' key table, only a class
    head of 134 / 81 outputs; converted, they load strictly and give the exported model's panoptic / instance output."""
    from freemask.modeling.postprocess import UniversalPostprocess

    opts = ["MODEL.SEM_SEG_HEAD.NUM_CLASSES", str(num_classes)]
    cfg = get_cfg()
    cfg.merge_from_file(str(repo_root / "configs" / "toy" / config))
    cfg.merge_from_list(opts + ["MODEL.DEVICE", "cpu"])
    original = _perturbed_model(cfg, seed=0)
    source = export({k: v.clone() for k, v in original.state_dict().items()}, D2)
    assert source["sem_seg_head.predictor.class_embed.weight"].shape[0] == num_classes + 1
    source = {k: v for k, v in source.items() if "num_batches" not in k}
    source["criterion.empty_weight"] = torch.ones(num_classes + 1)  # as official files carry it
    write_detectron2_pkl(tmp_path / "model_final.pkl", source)
    dst = tmp_path / "converted.pth"
    cmd = ["tools/convert_checkpoint.py", str(tmp_path / "model_final.pkl"), str(dst)]
    run = run_script(cmd + ["--config-file", f"configs/toy/{config}", *opts], cwd=repo_root, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "every model key is filled" in run.stdout

    loaded = _load_like_train_net(cfg, dst)
    postprocess = UniversalPostprocess.from_config(
        cfg, {"thing_dataset_id_to_contiguous_id": dict(enumerate(thing_ids))}
    )
    batch = [{"image": torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8), "height": 64, "width": 64}]
    with torch.no_grad():
        want, got = original(batch, postprocess=postprocess)[0], loaded(batch, postprocess=postprocess)[0]
    assert set(got) == set(want) and "instances" in got
    for key in ("pred_masks", "scores", "pred_classes"):
        assert torch.equal(got["instances"][key], want["instances"][key])
    if "panoptic_seg" in want:
        assert torch.equal(got["panoptic_seg"][0], want["panoptic_seg"][0])
        assert got["panoptic_seg"][1] == want["panoptic_seg"][1]
