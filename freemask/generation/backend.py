"""The interface between ``tools/generate_syn.py`` (run.py) and the image generators, and the one builder of them.

A backend turns a batch of requests (a real mask's training labels at the output size, its stem and seed) and their
initial latents into RGB images. The latents come from the caller (one generator seeded by ``(stem, seed)``), so an
image never depends on the batch size, the batch companions or the number of processes. ``build_backend`` checks
every path before importing diffusers and refuses anything that would need the network.

Backends: ``freestylenet`` (FreestyleNet's released checkpoint, rectified cross-attention; :mod:`.freestylenet`),
``controlnet`` (Stable Diffusion 1.5 + the segmentation ControlNet; :mod:`.controlnet`) and ``tiny`` (random tiny
model for tests; :func:`freemask.generation.tiny.build_tiny_backend`). Every file a backend loads is checked where it
loads it (:mod:`.file_checks`): a truncated or corrupt one is one line naming it.
"""

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Protocol, Sequence, Tuple

import numpy as np
import torch

from .errors import GenerationError
from .sampling_options import SamplingOptions

BACKENDS = ("freestylenet", "controlnet")


@dataclass(frozen=True)
class GenerationRequest:
    """One image to make. ``labels``: (H, W) int64 training labels 0..K-1 or the ignore label, at the output size
    (nearest-resized); ``class_names``: the dataset's K class names (the backend maps them to its own tables)."""

    stem: str
    seed: int
    labels: np.ndarray
    class_names: Sequence[str]


class GenerationBackend(Protocol):
    """What run.py needs of a generator.

    ``latent_shape``: (C, h, w) of one image's initial noise. ``settings()``: everything that changes the pixels
    (for the manifest and the settings check on resume). ``weight_files()``: the files whose hashes the manifest
    records. ``generate(requests, latents)``: latents (B, C, h, w) CPU float32, one per request; returns B uint8
    (size, size, 3) RGB images, each what it would be in a batch of one.
    """

    name: str
    latent_shape: Tuple[int, int, int]

    def weight_files(self) -> List[str]: ...

    def settings(self) -> Dict[str, Any]: ...

    def generate(self, requests: Sequence[GenerationRequest], latents: torch.Tensor) -> List[np.ndarray]: ...


def build_backend(
    name: str,
    *,
    weights: str,
    config_dir: Optional[str],
    dataset: str,
    steps: int,
    guidance: float,
    size: int,
    device: str,
    dtype: str,
    ignore_label: int,
    compile_unet: bool = False,
) -> GenerationBackend:
    """The backend ``name`` from local files only.

    ``freestylenet``: ``weights`` = the released ``freestyle-sd-v1-4-{ade20k,coco}.ckpt``, ``config_dir`` = a
    diffusers Stable Diffusion v1 folder holding at least the component configs and tokenizer (weights not needed).
    ``controlnet``: ``weights`` = the diffusers segmentation-ControlNet folder, ``config_dir`` = the diffusers
    Stable Diffusion 1.5 folder (configs and weights). ``dataset``: ``ade20k`` / ``coco_stuff`` or a registered
    dataset with their classes. GenerationError (one line) for anything missing, remote or unsupported.
    """
    options = SamplingOptions(steps, guidance, size, device, dtype, ignore_label, compile_unet)
    if name == "freestylenet":
        from .freestylenet import build_freestylenet

        return build_freestylenet(weights, config_dir, dataset, options)
    if name == "controlnet":
        from .controlnet import build_controlnet

        return build_controlnet(weights, config_dir, dataset, options)
    raise GenerationError(f"--backend {name}: choose one of {', '.join(BACKENDS)}")


def check_backend_files(name: str, weights: str, config_dir: Optional[str]) -> None:
    """The checks ``build_backend`` runs on every file backend ``name`` loads (missing, remote, truncated, corrupt),
    without building it: for the launching process, so a bad file is one line before any worker starts instead of
    one per worker."""
    if name == "freestylenet":
        from .freestylenet import check_freestylenet_files

        check_freestylenet_files(weights, config_dir)
    elif name == "controlnet":
        from .controlnet import check_controlnet_files

        check_controlnet_files(weights, config_dir)
