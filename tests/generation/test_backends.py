"""The backends: the tiny one end to end, batch independence, the ControlNet palette and loading, refusal lines."""

import numpy as np
import pytest
import torch

from freemask.data.datasets.ade20k import ade20k_meta
from freemask.data.datasets.coco_stuff import coco_stuff_meta
from freemask.generation.backend import GenerationRequest, build_backend
from freemask.generation.errors import GenerationError

ADE = ade20k_meta()[0]


def _labels(seed, size=64):
    rng = np.random.default_rng(seed)
    labels = np.full((size, size), 255, dtype=np.int64)
    labels[: size // 2] = rng.integers(0, 150)
    labels[size // 2 :, : size // 2] = rng.integers(0, 150)
    labels[size // 2 :, size // 2 + 8 :] = rng.integers(0, 150)
    return labels


def _requests(n):
    return [GenerationRequest(f"mask{i}", 42, _labels(i), ADE) for i in range(n)]


def _latents(backend, n):
    return torch.randn((n,) + backend.latent_shape, generator=torch.Generator().manual_seed(7))


@pytest.fixture(scope="module")
def tiny():
    from freemask.generation.tiny import build_tiny_backend

    return build_tiny_backend("ade20k")


def test_tiny_backend_images(tiny):
    assert tiny.name == "tiny" and tiny.latent_shape == (4, 8, 8) and tiny.weight_files() == []
    settings = tiny.settings()
    assert settings["steps"] == 2 and settings["guidance"] == 2.0 and settings["size"] == 64
    assert settings["rectified_attention"] is True
    images = tiny.generate(_requests(2), _latents(tiny, 2))
    assert [(i.shape, i.dtype) for i in images] == [((64, 64, 3), np.uint8)] * 2
    assert not np.array_equal(images[0], images[1])


def test_same_request_alone_or_in_a_batch_of_three_gives_identical_pixels(tiny):
    requests, latents = _requests(3), _latents(tiny, 3)
    batch = tiny.generate(requests, latents)
    alone = tiny.generate(requests[1:2], latents[1:2])[0]
    assert np.array_equal(alone, batch[1])  # exact (CPU: one request per pipeline call)
    tiny.micro_batch = None  # the GPU path on a CPU: one pipeline call for the batch, equal to rounding
    try:
        together = tiny.generate(requests, latents)
    finally:
        tiny.micro_batch = 1
    assert np.abs(together[1].astype(int) - alone.astype(int)).max() <= 1


def test_rectification_changes_the_image(tiny):
    labels = _labels(0)
    swapped = labels.copy()
    a, b = labels[0, 0], labels[-1, 0]
    swapped[labels == a], swapped[labels == b] = b, a  # same classes, hence the same caption, other layout
    latents = _latents(tiny, 1)
    one = tiny.generate([GenerationRequest("a", 42, labels, ADE)], latents)[0]
    two = tiny.generate([GenerationRequest("b", 42, swapped, ADE)], latents)[0]
    assert not np.array_equal(one, two)


def test_overflowing_caption_is_logged(tiny, caplog):
    labels = np.repeat(np.arange(150), 28)[:4096].reshape(64, 64)  # 147 ADE20K classes: far over 75 caption tokens
    with caplog.at_level("WARNING", logger="freemask.generation"):
        tiny.generate([GenerationRequest("crowded", 42, labels, ADE)], _latents(tiny, 1))
    assert "mask crowded: the caption of all its classes exceeds CLIP's 75 tokens" in caplog.text


def test_tiny_model_is_the_same_in_every_build():
    from freemask.generation.tiny import tiny_pipeline

    state = torch.random.get_rng_state()
    first, second = tiny_pipeline().unet.state_dict(), tiny_pipeline().unet.state_dict()
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's random stream is untouched
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_datasets_without_a_table_use_the_request_names():
    from freemask.generation.tiny import build_tiny_backend

    backend = build_tiny_backend("toy_sem_seg_train", size=32, steps=1)
    labels = np.zeros((32, 32), dtype=np.int64)
    labels[16:] = 1
    (image,) = backend.generate([GenerationRequest("t", 42, labels, ("sky", "grass"))], _latents(backend, 1))
    assert image.shape == (32, 32, 3)
    assert backend._builders[("sky", "grass")](labels).text == "sky grass"


def test_ade20k_palette_paints_labels_and_ignore_black():
    from freemask.generation.controlnet import Ade20kPalette

    palette = Ade20kPalette(ade20k_meta()[1], ignore_label=255)
    painted = palette(np.array([[0, ADE.index("road"), 255]]))
    assert painted.shape == (3, 1, 3)
    assert (painted[:, 0, 0] * 255).round().tolist() == [120, 120, 120]
    assert (painted[:, 0, 1] * 255).round().tolist() == [140, 140, 140]
    assert painted[:, 0, 2].tolist() == [0, 0, 0]


def test_controlnet_backend_from_local_folders(tmp_path):
    import diffusers

    from freemask.generation.tiny import tiny_pipeline

    sd = tiny_pipeline(size=32)
    sd.save_pretrained(tmp_path / "sd15")
    torch.manual_seed(0)
    controlnet = diffusers.ControlNetModel.from_unet(sd.unet, conditioning_embedding_out_channels=(16, 32, 48, 64))
    controlnet.save_pretrained(tmp_path / "seg")
    backend = build_backend(
        "controlnet",
        weights=str(tmp_path / "seg"),
        config_dir=str(tmp_path / "sd15"),
        dataset="ade20k_sem_seg_train",
        **dict(steps=1, guidance=2.0, size=32, device="cpu", dtype="float32", ignore_label=255),
    )
    assert backend.name == "controlnet" and backend.settings()["rectified_attention"] is False
    assert any(f.endswith("seg/diffusion_pytorch_model.safetensors") for f in backend.weight_files())
    labels = _labels(3, size=32)
    (image,) = backend.generate([GenerationRequest("c", 42, labels, ADE)], _latents(backend, 1))
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8


COMMON = dict(dataset="ade20k", steps=2, guidance=2.0, size=64, device="cpu", dtype="float32", ignore_label=255)


def _config_dir(tmp_path):
    for entry in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        (tmp_path / "cfg" / entry).mkdir(parents=True)
    for entry in ("model_index.json", "unet/config.json", "vae/config.json", "text_encoder/config.json"):
        (tmp_path / "cfg" / entry).write_text("{}")
    return tmp_path / "cfg"


@pytest.mark.parametrize(
    "name,kwargs,message",
    [
        ("freestylenet", dict(weights="missing.ckpt", config_dir=None), "--weights missing.ckpt: no such file"),
        ("freestylenet", dict(weights="essunny310/FreestyleNet", config_dir=None), "hub name"),
        ("freestylenet", dict(weights="https://x/f.ckpt", config_dir=None), "is a URL; generation never downloads"),
        ("freestylenet", dict(weights="CKPT", config_dir=None), "--config-dir is required .*`hf download CompVis"),
        ("freestylenet", dict(weights="CKPT", config_dir="nowhere"), "--config-dir nowhere: no such folder"),
        ("freestylenet", dict(weights="CKPT", config_dir="CFG"), "lacks tokenizer/vocab.json or tokenizer/tok"),
        ("controlnet", dict(weights="nowhere", config_dir=None), "--weights nowhere: no such folder"),
        ("dalle", dict(weights="CKPT", config_dir=None), "--backend dalle: choose one of freestylenet, controlnet"),
    ],
)
def test_refusals_are_one_line(tmp_path, name, kwargs, message):
    ckpt = tmp_path / "f.ckpt"
    ckpt.write_bytes(b"")
    paths = {"CKPT": str(ckpt), "CFG": str(_config_dir(tmp_path)) if "CFG" in kwargs.values() else None}
    kwargs = {k: paths.get(v, v) for k, v in kwargs.items()}
    with pytest.raises(GenerationError, match=message) as error:
        build_backend(name, **kwargs, **COMMON)
    assert "\n" not in str(error.value)


def test_controlnet_refuses_coco_stuff_masks(tmp_path):
    for folder, files in (("seg", ["config.json", "diffusion_pytorch_model.safetensors"]), ("sd15", [])):
        (tmp_path / folder).mkdir()
        for f in files:
            (tmp_path / folder / f).write_text("{}")
    from freemask.generation.controlnet import SD15_ENTRIES

    for entry in SD15_ENTRIES:
        path = tmp_path / "sd15" / entry.split("|")[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    common = dict(COMMON, dataset="coco_2017_train_stuff_sem_seg")
    with pytest.raises(GenerationError, match="ADE20K's 150-class palette only .* --backend freestylenet"):
        build_backend("controlnet", weights=str(tmp_path / "seg"), config_dir=str(tmp_path / "sd15"), **common)
    assert len(coco_stuff_meta()[0]) == 171


def test_float16_on_cpu_and_unknown_dataset_are_refused(tmp_path):
    from freemask.generation.tiny import build_tiny_backend

    with pytest.raises(GenerationError, match="float16 needs a GPU"):
        build_tiny_backend("ade20k", dtype="float16")
    ckpt = tmp_path / "f.ckpt"
    ckpt.write_bytes(b"")
    cfg = _config_dir(tmp_path)
    for entry in ("tokenizer/vocab.json", "tokenizer/merges.txt", "scheduler/scheduler_config.json"):
        (cfg / entry).write_text("{}")
    with pytest.raises(GenerationError, match="dataset cityscapes_fine_sem_seg_train: FreestyleNet has name tables"):
        common = dict(COMMON, dataset="cityscapes_fine_sem_seg_train")
        build_backend("freestylenet", weights=str(ckpt), config_dir=str(cfg), **common)
