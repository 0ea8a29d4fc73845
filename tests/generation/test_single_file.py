"""``from_single_file`` of an LDM-layout Lightning checkpoint written here equals the same weights from a folder.

The checkpoint is the tiny pipeline converted to LDM keys by our own converter (ldm_checkpoint.py), in the layout of
FreestyleNet's released files; the config folder is the tiny pipeline's ``save_pretrained`` with every weight file
deleted, so the weights can only come from the checkpoint. Loading runs with hub access switched off.
"""

import os

import numpy as np
import torch
from ldm_checkpoint import write_lightning_ckpt

from freemask.data.datasets.ade20k import ade20k_meta
from freemask.generation.backend import GenerationRequest, build_backend
from freemask.generation.offline import WEIGHT_SUFFIXES
from freemask.generation.tiny import build_tiny_backend, tiny_pipeline


def test_freestylenet_backend_from_a_lightning_checkpoint_equals_the_folder_weights(tmp_path):
    pipe = tiny_pipeline()
    folder = tmp_path / "sd-v1-configs"
    pipe.save_pretrained(folder)
    for root, _, files in os.walk(folder):
        for name in files:
            if name.endswith(WEIGHT_SUFFIXES):
                os.remove(os.path.join(root, name))
    ckpt = tmp_path / "freestyle-tiny.ckpt"
    write_lightning_ckpt(pipe, str(ckpt))

    backend = build_backend(
        "freestylenet",
        weights=str(ckpt),
        config_dir=str(folder),
        dataset="ade20k",
        **dict(steps=2, guidance=2.0, size=64, device="cpu", dtype="float32", ignore_label=255),
    )
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert backend.name == "freestylenet" and backend.weight_files() == [str(ckpt)]
    for part in ("unet", "vae", "text_encoder"):
        loaded, reference = getattr(backend.pipe, part).state_dict(), getattr(pipe, part).state_dict()
        assert set(loaded) == set(reference)
        assert all(torch.equal(loaded[k], reference[k].reshape(loaded[k].shape)) for k in reference), part

    tiny = build_tiny_backend("ade20k")
    labels = np.full((64, 64), 255, dtype=np.int64)
    labels[:40], labels[40:, :30] = 2, 48
    request = GenerationRequest("m", 42, labels, ade20k_meta()[0])
    latents = torch.randn((1,) + backend.latent_shape, generator=torch.Generator().manual_seed(3))
    assert np.array_equal(backend.generate([request], latents)[0], tiny.generate([request], latents)[0])
