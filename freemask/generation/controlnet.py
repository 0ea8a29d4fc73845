"""Stable Diffusion 1.5 + the segmentation ControlNet, from local diffusers folders.

lllyasviel's segmentation ControlNet was trained on ADE20K layouts painted in ADE20K's 150-colour palette (the
mmsegmentation palette of ``meta/ade20k_150.json``: training label k, ADE value k + 1, is colour k), given as RGB in
[0, 1]. Pixels of the ignore label (ADE's "other", 0) are painted black: the palette has no black and the model's
Uniformer layouts never had unlabelled pixels, so black marks "no class" without naming one.

COCO-Stuff masks are refused: 171 classes, most without an ADE20K counterpart (91 stuff classes split differently),
have no faithful colour, and a guessed mapping would silently change what the images show. The prompt is the class
names present (FreestyleNet's ADE20K names, the same caption as the freestylenet backend); sampling is the same PLMS.
"""

import os
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from .captions import dataset_family, freestylenet_names
from .diffusion import StableDiffusionBackend, plms_scheduler, speed_up, torch_dtype
from .errors import GenerationError
from .file_checks import check_files, folder_files, load_errors_as_user_errors
from .freestylenet import CONFIG_COMPONENTS, CONFIG_ENTRIES
from .offline import LOCAL_PIPELINE, import_diffusers, require_folder, weight_files_in
from .sampling_options import SamplingOptions

IGNORE_COLOR = (0, 0, 0)
_WEIGHTS = "diffusion_pytorch_model.safetensors|diffusion_pytorch_model.bin"
CONTROLNET_ENTRIES = ("config.json", _WEIGHTS)
SD15_ENTRIES = CONFIG_ENTRIES + (
    f"unet/{_WEIGHTS.replace('|', '|unet/')}",
    f"vae/{_WEIGHTS.replace('|', '|vae/')}",
    "text_encoder/model.safetensors|text_encoder/pytorch_model.bin",
)
_WHAT_CONTROLNET = "the diffusers segmentation ControlNet"
_WHAT_SD15 = "the diffusers Stable Diffusion 1.5 pipeline"
_HOW_CONTROLNET = (
    "on a machine with network access run `hf download lllyasviel/sd-controlnet-seg --local-dir <folder>` and pass it "
    "as --weights"
)
_HOW_SD15 = (
    "on a machine with network access run `hf download stable-diffusion-v1-5/stable-diffusion-v1-5 --include '*.json' "
    "'*.txt' '*.safetensors' --exclude 'safety_checker/*' '*.fp16.*' '*ema*' --local-dir <folder>` and pass it as "
    "--config-dir"
)


class Ade20kPalette:
    """Paints training labels in the ADE20K palette: (H, W) labels -> (3, H, W) float RGB in [0, 1]."""

    def __init__(self, colors: Sequence[Tuple[int, int, int]], ignore_label: int) -> None:
        lut = np.zeros((256, 3), dtype=np.float32)
        lut[:] = IGNORE_COLOR
        lut[: len(colors)] = np.asarray(colors, dtype=np.float32)
        self.lut, self.num_classes, self.ignore_label = lut / 255.0, len(colors), ignore_label

    def __call__(self, labels: np.ndarray) -> torch.Tensor:
        labels = np.asarray(labels)
        painted = np.where(labels == self.ignore_label, self.num_classes, labels)  # any index >= K is black
        return torch.from_numpy(self.lut[np.clip(painted, 0, 255)].transpose(2, 0, 1).copy())


def check_controlnet_files(weights: str, config_dir: Optional[str]) -> None:
    """GenerationError (one line) for a missing, remote, truncated or corrupt file the backend would load: the
    ControlNet folder and the SD 1.5 folder (configs, tokenizer, weights). Reads headers only."""
    require_folder(weights, "--weights", CONTROLNET_ENTRIES, _WHAT_CONTROLNET, _HOW_CONTROLNET)
    if not config_dir:
        raise GenerationError(f"--config-dir is required for the controlnet backend (SD 1.5 folder); {_HOW_SD15}")
    require_folder(config_dir, "--config-dir", SD15_ENTRIES, _WHAT_SD15, _HOW_SD15)
    check_files(folder_files(weights, ("",), weights=True), "--weights", _WHAT_CONTROLNET, _HOW_CONTROLNET)
    check_files(folder_files(config_dir, CONFIG_COMPONENTS, weights=True), "--config-dir", _WHAT_SD15, _HOW_SD15)


def build_controlnet(
    weights: str, config_dir: Optional[str], dataset: str, options: SamplingOptions
) -> StableDiffusionBackend:
    """The ControlNet backend (see :func:`freemask.generation.backend.build_backend`)."""
    family = dataset_family(dataset)
    if family != "ade20k":
        raise GenerationError(
            f"dataset {dataset}: the segmentation ControlNet knows ADE20K's 150-class palette only and COCO-Stuff's "
            f"classes have no faithful ADE20K colour; use --backend freestylenet with freestyle-sd-v1-4-coco.ckpt"
        )
    check_controlnet_files(weights, config_dir)
    torch_dtype(options.dtype, options.device)  # refuse before the slow imports
    diffusers = import_diffusers()
    with load_errors_as_user_errors(f"--weights {weights}", _WHAT_CONTROLNET, _HOW_CONTROLNET):
        controlnet = diffusers.ControlNetModel.from_pretrained(weights, local_files_only=True)
    with load_errors_as_user_errors(f"--config-dir {config_dir}", _WHAT_SD15, _HOW_SD15):
        pipe = diffusers.StableDiffusionControlNetPipeline.from_pretrained(
            config_dir, controlnet=controlnet, **LOCAL_PIPELINE
        )
    pipe.scheduler = plms_scheduler(diffusers, pipe.scheduler.config)
    from ..data.datasets.ade20k import ade20k_meta

    folders = [weights] + [os.path.join(config_dir, c) for c in ("unet", "vae", "text_encoder")]
    return StableDiffusionBackend(
        "controlnet",
        speed_up(pipe, options),
        options,
        names=freestylenet_names(family),
        settings={"captions": family, "control": "ade20k palette, ignore black"},
        weight_files=weight_files_in(folders),
        control=Ade20kPalette(ade20k_meta()[1], options.ignore_label),
    )
