"""A truncated or corrupt file among those a generation backend loads (FreestyleNet's checkpoint, the ControlNet and
Stable Diffusion folders' weights, configs and tokenizer) is one line naming the file and how to get it again, from
the backend and from tools/generate_syn.py, and the files are left as they were."""

import hashlib
import importlib.util
import os
import pathlib
import shutil

import cv2
import numpy as np
import pytest
import torch
from ldm_checkpoint import write_lightning_ckpt

from freemask.generation.backend import build_backend
from freemask.generation.errors import GenerationError
from freemask.generation.file_checks import file_problem
from freemask.generation.offline import WEIGHT_SUFFIXES

REPO = pathlib.Path(__file__).resolve().parents[2]
COMMON = dict(dataset="ade20k", steps=1, guidance=2.0, size=32, device="cpu", dtype="float32", ignore_label=255)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The tiny pipeline as every backend's files: an SD folder with weights, a config-only folder, FreestyleNet's
    single-file checkpoint and a segmentation ControlNet folder."""
    import diffusers

    from freemask.generation.tiny import tiny_pipeline

    root = tmp_path_factory.mktemp("models")
    pipe = tiny_pipeline(size=32)
    pipe.save_pretrained(root / "sd15")
    shutil.copytree(root / "sd15", root / "configs")
    for folder, _, files in os.walk(root / "configs"):
        for name in files:
            if name.endswith(WEIGHT_SUFFIXES):
                os.remove(os.path.join(folder, name))
    write_lightning_ckpt(pipe, str(root / "freestyle.ckpt"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        controlnet = diffusers.ControlNetModel.from_unet(pipe.unet, conditioning_embedding_out_channels=(16, 32))
    controlnet.save_pretrained(root / "seg")
    return root


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _hashes(folder):
    files = sorted(p for p in pathlib.Path(folder).rglob("*") if p.is_file())
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _copy(models, tmp_path, name):
    shutil.copytree(models / name, tmp_path / name)
    return tmp_path / name


def test_structure_checks_pass_intact_files_and_name_what_is_wrong(tmp_path, models):
    for intact in ("freestyle.ckpt", "seg/diffusion_pytorch_model.safetensors", "configs/unet/config.json"):
        assert file_problem(str(models / intact)) is None
    torch.save({"w": torch.zeros(3)}, tmp_path / "model.bin")
    assert file_problem(str(tmp_path / "model.bin")) is None

    ckpt = tmp_path / "f.ckpt"
    shutil.copy(models / "freestyle.ckpt", ckpt)
    _truncate(ckpt, 0.9)
    assert "truncated download" in file_problem(str(ckpt))
    ckpt.write_bytes(b"<html>quota exceeded</html>")  # what a failed Google Drive download saves
    assert file_problem(str(ckpt)) == "neither a PyTorch zip archive nor a pickle"
    ckpt.write_bytes(b"")
    assert file_problem(str(ckpt)) == "an empty file"

    weights = tmp_path / "w.safetensors"
    shutil.copy(models / "seg" / "diffusion_pytorch_model.safetensors", weights)
    size = weights.stat().st_size
    _truncate(weights, 0.999)
    assert "bytes of tensor data, the file holds" in file_problem(str(weights))
    weights.write_bytes(b"\x10")
    assert "shorter than a safetensors header" in file_problem(str(weights))
    assert size > 100_000

    config = tmp_path / "config.json"
    config.write_text('{"in_channels": 4, "out')
    assert file_problem(str(config)).startswith("not valid JSON")


def test_a_truncated_freestylenet_checkpoint_is_one_line_naming_it(tmp_path, models):
    ckpt = tmp_path / "freestyle-sd-v1-4-ade20k.ckpt"
    shutil.copy(models / "freestyle.ckpt", ckpt)
    _truncate(ckpt)
    before = _hashes(tmp_path) | _hashes(models)
    with pytest.raises(GenerationError) as error:
        build_backend("freestylenet", weights=str(ckpt), config_dir=str(models / "configs"), **COMMON)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"--weights: {ckpt} is truncated or corrupt")
    assert "freestyle-sd-v1-4-ade20k.ckpt or freestyle-sd-v1-4-coco.ckpt; download it again" in message
    assert _hashes(tmp_path) | _hashes(models) == before


def test_a_complete_checkpoint_of_another_model_is_one_line(tmp_path, models):
    ckpt = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"classifier.weight": torch.zeros(2, 2)}}, ckpt)
    with pytest.raises(GenerationError) as error:
        build_backend("freestylenet", weights=str(ckpt), config_dir=str(models / "configs"), **COMMON)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"--weights {ckpt} with --config-dir ")
    assert "could not be loaded as FreestyleNet's released" in message


@pytest.mark.parametrize(
    "entry",
    ["tokenizer/tokenizer.json", "text_encoder/config.json", "model_index.json", "scheduler/scheduler_config.json"],
)
def test_a_corrupt_file_of_the_config_folder_is_one_line_naming_it(tmp_path, models, entry):
    configs = _copy(models, tmp_path, "configs")
    _truncate(configs / entry, 0.6)
    with pytest.raises(GenerationError) as error:
        build_backend("freestylenet", weights=str(models / "freestyle.ckpt"), config_dir=str(configs), **COMMON)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"--config-dir: {configs / entry} is truncated or corrupt")
    assert "hf download CompVis/stable-diffusion-v1-4" in message


@pytest.mark.parametrize(
    "flag,folder,entry",
    [
        ("--weights", "seg", "diffusion_pytorch_model.safetensors"),
        ("--config-dir", "sd15", "unet/diffusion_pytorch_model.safetensors"),
        ("--config-dir", "sd15", "vae/diffusion_pytorch_model.safetensors"),
        ("--config-dir", "sd15", "text_encoder/model.safetensors"),  # diffusers' error named no file for this one
    ],
)
def test_a_truncated_controlnet_or_sd_weight_file_is_one_line_naming_it(tmp_path, models, flag, folder, entry):
    copied = _copy(models, tmp_path, folder)
    _truncate(copied / entry)
    before = _hashes(tmp_path)
    paths = {"seg": models / "seg", "sd15": models / "sd15", folder: copied}
    with pytest.raises(GenerationError) as error:
        build_backend("controlnet", weights=str(paths["seg"]), config_dir=str(paths["sd15"]), **COMMON)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{flag}: {copied / entry} is truncated or corrupt")
    assert "download it again: on a machine with network access run `hf download" in message
    assert _hashes(tmp_path) == before


def _load_tool():
    spec = importlib.util.spec_from_file_location("tool_generate_syn", REPO / "tools" / "generate_syn.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generate_syn_with_a_truncated_checkpoint_stops_with_one_line_and_touches_nothing(tmp_path, models, capsys):
    masks = tmp_path / "real"
    masks.mkdir()
    for i in range(2):
        cv2.imwrite(str(masks / f"img{i}.png"), np.full((24, 32), i + 1, np.uint8))
    ckpt = tmp_path / "freestyle-sd-v1-4-ade20k.ckpt"
    shutil.copy(models / "freestyle.ckpt", ckpt)
    _truncate(ckpt)

    def inputs():
        return _hashes(masks) | _hashes(models) | {str(ckpt): hashlib.sha256(ckpt.read_bytes()).hexdigest()}

    before = inputs()
    argv = ["--real-mask-path", str(masks), "--reduce-zero-label", "--classes", "ade20k_sem_seg_train"]
    argv += ["--output", str(tmp_path / "out"), "--backend", "freestylenet", "--weights", str(ckpt)]
    argv += ["--config-dir", str(models / "configs"), "--size", "32", "--steps", "1", "--no-progress"]
    try:
        code = _load_tool().main(argv)
    except SystemExit as e:  # the error met in the (in-process) worker exits it
        code = e.code
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith(f"error: --weights: {ckpt} is truncated or corrupt")
    assert inputs() == before
