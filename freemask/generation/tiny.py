"""A tiny, randomly initialised Stable-Diffusion-v1-shaped pipeline, built from constructors (no files, no hub).

For the tests, the toy pipeline and ``bench/generate.py`` on a CPU: the same components as the real models (UNet with
cross-attention at two levels, KL autoencoder with 8x downsampling, CLIP text encoder, CLIP's real BPE vocabulary,
PNDM = PLMS), at sizes that build in about 0.2 s and run a guided step at 64 px in about 0.03 s (measured with
diffusers 0.42.1 on the project's 2-core CPU, one torch thread). The weights come from a fixed seed, drawn in a forked
RNG, so every process builds the same model and the caller's random state is untouched. A random model paints noise:
its images test the machinery.
"""

from typing import Any

import torch

from .backend import GenerationBackend
from .captions import dataset_family, freestylenet_names
from .clip_vocab import MAX_LENGTH, load_clip_tokenizer
from .diffusion import StableDiffusionBackend, plms_scheduler, speed_up, torch_dtype
from .offline import import_diffusers
from .rectified_attention import RectificationLayout, install_rectified_attention
from .sampling_options import SamplingOptions

# Stable Diffusion v1's noise schedule (diffusers' SCHEDULER_DEFAULT_CONFIG); plms_scheduler sets the rest.
_SD_V1_SCHEDULE = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
}


def tiny_pipeline(size: int = 64, seed: int = 0) -> Any:
    """The tiny ``StableDiffusionPipeline`` (float32, CPU, plain attention processors) for ``size`` px images."""
    diffusers = import_diffusers()
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = diffusers.UNet2DConditionModel(
            sample_size=size // 8,
            in_channels=4,
            out_channels=4,
            layers_per_block=2,
            block_out_channels=(32, 64),
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=8,
            norm_num_groups=32,
        )
        vae = diffusers.AutoencoderKL(
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            layers_per_block=2,
            block_out_channels=(32,) * 4,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            norm_num_groups=32,
            sample_size=size,
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=49408,
                hidden_size=32,
                intermediate_size=37,
                num_hidden_layers=2,
                num_attention_heads=4,
                max_position_embeddings=MAX_LENGTH,
                bos_token_id=49406,
                eos_token_id=49407,
                pad_token_id=49407,
            )
        )
    return diffusers.StableDiffusionPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=load_clip_tokenizer(),
        unet=unet.eval(),
        scheduler=plms_scheduler(diffusers, _SD_V1_SCHEDULE),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def build_tiny_backend(
    dataset: str,
    size: int = 64,
    steps: int = 2,
    guidance: float = 2.0,
    *,
    device: str = "cpu",
    dtype: str = "float32",
    ignore_label: int = 255,
    seed: int = 0,
    compile_unet: bool = False,
) -> GenerationBackend:
    """The tiny pipeline with rectified attention as a backend named "tiny". ADE20K / COCO-Stuff (family keys or
    registered datasets with their classes) are captioned with FreestyleNet's tables, any other dataset (the toy
    data) with the requests' own class names."""
    options = SamplingOptions(steps, guidance, size, device, dtype, ignore_label, compile_unet)
    torch_dtype(dtype, device)  # refuse before building
    family = dataset_family(dataset)
    pipe = speed_up(tiny_pipeline(size, seed), options)
    layout = RectificationLayout()
    install_rectified_attention(pipe.unet, layout)
    return StableDiffusionBackend(
        "tiny",
        pipe,
        options,
        names=freestylenet_names(family) if family else None,
        settings={"tiny_seed": seed, "captions": family or "request names"},
        layout=layout,
    )
