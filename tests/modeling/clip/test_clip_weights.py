"""CLIP weight files: what loads, and the one clear line for each file that does not (missing, corrupt, another
architecture, TorchScript without the switch, OpenAI weights into a GELU architecture), plus tools/convert_clip.py."""

import argparse
import hashlib
import importlib.util
import os
import warnings

import pytest
import torch
from open_clip.model import CLIP
from safetensors.torch import save_file

from freemask.modeling.clip import TINY_CLIP_NAME, ClipError, build_clip
from freemask.modeling.clip.weights import OPENAI_MARKER_KEYS, is_torchscript_archive

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def _same_weights(clip, state):
    own = clip.model.state_dict()
    return all(torch.equal(own[k], state[k].to(own[k].dtype)) for k in own)


def _openai_marked(state):
    """A state dict as OpenAI's archives hold it: the weights plus three scalar entries."""
    return {
        **state,
        "input_resolution": torch.tensor(64),
        "context_length": torch.tensor(77),
        "vocab_size": torch.tensor(49408),
    }


def _torchscript(model, path):
    """Trace ``model`` (its image path suffices: the archive holds every parameter) into a TorchScript file."""
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace_module(model, {"encode_image": torch.zeros(1, 3, 64, 64)}, check_trace=False).save(path)
    return path


@pytest.fixture
def tiny_state(tiny_clip):
    torch.manual_seed(1)
    other = build_clip(TINY_CLIP_NAME)  # different random weights than the fixture's
    return {k: v.clone() for k, v in other.model.state_dict().items()}


def test_plain_and_wrapped_state_dicts_load_exactly(tmp_path, tiny_state):
    plain = tmp_path / "plain.pth"
    torch.save(tiny_state, plain)
    assert _same_weights(build_clip(TINY_CLIP_NAME, str(plain)), tiny_state)
    wrapped = tmp_path / "training_checkpoint.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v.half() for k, v in tiny_state.items()}}, wrapped)
    loaded = build_clip(TINY_CLIP_NAME, str(wrapped))
    assert _same_weights(loaded, {k: v.half() for k, v in tiny_state.items()})
    assert next(loaded.parameters()).dtype == torch.float32  # fp16 files load into the fp32 model
    safetensors = tmp_path / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_state.items()}, str(safetensors))
    assert _same_weights(build_clip(TINY_CLIP_NAME, str(safetensors)), tiny_state)
    safetensors.write_bytes(b"garbage")
    with pytest.raises(ClipError, match="corrupt safetensors file"):
        build_clip(TINY_CLIP_NAME, str(safetensors))


def test_missing_and_corrupt_files(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(ClipError, match=r"nope\.pth: CLIP weights not found .*MODEL\.CLIP_ADAPTER\.CLIP_WEIGHTS"):
        build_clip(TINY_CLIP_NAME, str(missing))
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"\x80\x02not a checkpoint at all" * 10)
    with pytest.raises(ClipError, match=r"corrupt\.pth: corrupt"):
        build_clip(TINY_CLIP_NAME, str(corrupt))
    objects = tmp_path / "objects.pth"
    torch.save({"args": argparse.Namespace(lr=1)}, objects)
    with pytest.raises(ClipError, match=r"objects\.pth: holds Python objects beyond tensors"):
        build_clip(TINY_CLIP_NAME, str(objects))
    not_tensors = tmp_path / "list.pth"
    torch.save([1, 2, 3], not_tensors)
    with pytest.raises(ClipError, match="not a state dict of tensors"):
        build_clip(TINY_CLIP_NAME, str(not_tensors))


def test_wrong_architecture_names_both(tmp_path):
    wider = CLIP(
        embed_dim=64,
        vision_cfg={"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
        text_cfg={"context_length": 77, "vocab_size": 49408, "width": 128, "heads": 4, "layers": 3},
    )
    path = tmp_path / "other_arch.pth"
    torch.save(wider.state_dict(), path)
    with pytest.raises(ClipError) as info:
        build_clip(TINY_CLIP_NAME, str(path))
    message = str(info.value)
    assert "other_arch.pth" in message and f"MODEL.CLIP_ADAPTER.CLIP_MODEL_NAME {TINY_CLIP_NAME}" in message
    assert "text 3 layers x 128" in message and "text 2 layers x 64" in message  # the file's vs the configured


def test_torchscript_needs_the_switch_and_then_loads(tmp_path, tiny_state):
    source = CLIP(**_tiny_config())
    source.load_state_dict(tiny_state)
    archive = _torchscript(source, str(tmp_path / "ViT-tiny.pt"))
    assert is_torchscript_archive(archive)
    with pytest.raises(ClipError) as info:
        build_clip(TINY_CLIP_NAME, archive)
    message = str(info.value)
    assert "ViT-tiny.pt: is a TorchScript archive" in message
    assert "tools/convert_clip.py" in message and "MODEL.CLIP_ADAPTER.ALLOW_TORCHSCRIPT True" in message
    assert _same_weights(build_clip(TINY_CLIP_NAME, archive, allow_torchscript=True), tiny_state)


def test_quickgelu_guard(tmp_path, tiny_state):
    path = tmp_path / "openai.pth"
    torch.save(_openai_marked(tiny_state), path)
    with pytest.raises(
        ClipError, match=f"QuickGELU.*set MODEL.CLIP_ADAPTER.CLIP_MODEL_NAME {TINY_CLIP_NAME}-quickgelu"
    ):
        build_clip(TINY_CLIP_NAME, str(path))
    # FreeSeg's ViT-B/16: the guard fires from the config, before the (slow) model is built.
    markers_only = tmp_path / "ViT-B-16.pth"
    torch.save({k: torch.tensor(1) for k in OPENAI_MARKER_KEYS}, markers_only)
    with pytest.raises(ClipError, match="set MODEL.CLIP_ADAPTER.CLIP_MODEL_NAME ViT-B-16-quickgelu"):
        build_clip("ViT-B-16", str(markers_only))
    clip = build_clip(f"{TINY_CLIP_NAME}-quickgelu", str(path))
    assert _same_weights(clip, tiny_state)
    assert any(type(m).__name__ == "QuickGELU" for m in clip.modules())


def test_convert_tool_round_trip(tmp_path, tiny_state, capsys):
    source = CLIP(**_tiny_config())
    source.load_state_dict(tiny_state)
    archive = _torchscript(source, str(tmp_path / "openai.pt"))
    before = hashlib.sha256(open(archive, "rb").read()).hexdigest()
    out = tmp_path / "out" / "plain.pth"
    assert _run_tool(archive, str(out)) == 0
    assert "wrote" in capsys.readouterr().out and hashlib.sha256(open(archive, "rb").read()).hexdigest() == before
    converted = torch.load(out, weights_only=True)
    assert not is_torchscript_archive(str(out))
    assert _same_weights(build_clip(TINY_CLIP_NAME, str(out)), tiny_state)
    assert [p for p in os.listdir(out.parent) if p != "plain.pth"] == []  # no temporary left behind
    assert set(converted) >= set(tiny_state)
    assert _run_tool(str(out), str(tmp_path / "again.pth")) == 1
    assert "not a TorchScript archive, nothing to convert" in capsys.readouterr().err
    assert _run_tool(archive, archive) == 1
    assert "is the source file" in capsys.readouterr().err


def test_conversion_keeps_the_openai_mark(tmp_path, tiny_state):
    from freemask.modeling.clip import convert_torchscript

    source = CLIP(**_tiny_config(), quick_gelu=True)
    source.load_state_dict(tiny_state)
    for key in OPENAI_MARKER_KEYS:  # OpenAI's archives carry these scalars next to the weights
        if hasattr(source, key):
            delattr(source, key)  # open_clip keeps two of them as plain ints; the emulated archive stores tensors
        source.register_buffer(key, torch.tensor(1))
    out = tmp_path / "plain.pth"
    convert_torchscript(_torchscript(source, str(tmp_path / "openai.pt")), str(out))
    with pytest.raises(ClipError, match="QuickGELU"):
        build_clip(TINY_CLIP_NAME, str(out))
    assert _same_weights(build_clip(f"{TINY_CLIP_NAME}-quickgelu", str(out)), tiny_state)


def _tiny_config():
    from freemask.modeling.clip.model import _TINY

    return _TINY


def _run_tool(*args):
    """tools/convert_clip.py's exit code, run in this process (a subprocess would import open_clip again)."""
    spec = importlib.util.spec_from_file_location("convert_clip", os.path.join(REPO, "tools", "convert_clip.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(list(args))
