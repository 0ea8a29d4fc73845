"""One batch of requests through a diffusers Stable Diffusion pipeline: the part every backend shares.

The throughput design (issue 14 item 5): guidance batched as one UNet call of 2B samples (diffusers' default, where
FreestyleNet made two passes), the pipeline in fp16/bf16 on a GPU, SDPA attention everywhere (rectification as a
mask, so the fused kernels stay in use), channels_last UNet on a GPU, optional ``torch.compile`` of the UNet.

Every image depends only on its own request and its own initial latents: the text embeddings are computed per
caption, the rectification masks per sample, PNDM (= PLMS) adds no noise, and no generator is drawn from. The float
kernels themselves are not batch-invariant, though: oneDNN / MKL pick convolution, GEMM and attention algorithms by
batch size, which moves float32 results in the 7th digit (measured on the tiny model: 1e-6 in the UNet output,
1e-5 after the VAE) and so flips the rounding of a few uint8 pixels. On a CPU the requests therefore run one per
pipeline call (``micro_batch`` 1; batching gains only about 25 % there), so an image is byte-identical whatever the
batch size or process count (tests/generation/test_backends.py). On a GPU the whole batch is one call, for
throughput; there images agree across batch sizes to rounding, not bit for bit.
"""

import logging
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .captions import Caption, CaptionBuilder
from .errors import GenerationError
from .rectified_attention import RectificationLayout
from .sampling_options import SamplingOptions

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def torch_dtype(dtype: str, device: str) -> torch.dtype:
    """The torch dtype named ``dtype``; float16 only on a GPU (CPU kernels for it are missing or slow)."""
    if dtype not in DTYPES:
        raise GenerationError(f"--dtype {dtype}: choose one of {', '.join(DTYPES)}")
    if dtype == "float16" and not str(device).startswith("cuda"):
        raise GenerationError(f"--dtype float16 needs a GPU (device {device}); use float32 or bfloat16 on a CPU")
    return DTYPES[dtype]


def speed_up(pipe: Any, options: SamplingOptions) -> Any:
    """Move the pipeline to the options' device and dtype; a channels_last UNet on a GPU; optionally compiled."""
    device, dtype = options.device, torch_dtype(options.dtype, options.device)
    pipe = pipe.to(device) if dtype == torch.float32 else pipe.to(device=device, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    if str(device).startswith("cuda"):
        pipe.unet.to(memory_format=torch.channels_last)
    if options.compile_unet:
        pipe.unet = torch.compile(pipe.unet)
    return pipe


def plms_scheduler(diffusers: Any, config: Any) -> Any:
    """PNDM as LDM's PLMS whatever the folder's scheduler says: no Runge-Kutta warm-up, timesteps 1, 21, ..., 981
    for 50 steps ("leading" spacing, offset 1) and the final alpha of step 0 (``set_alpha_to_one=False``)."""
    return diffusers.PNDMScheduler.from_config(
        config, skip_prk_steps=True, set_alpha_to_one=False, steps_offset=1, timestep_spacing="leading"
    )


class StableDiffusionBackend:
    """A :class:`freemask.generation.backend.GenerationBackend` over a loaded diffusers pipeline.

    ``names``: the caption name of each training label (FreestyleNet's tables), or None to caption with the
    requests' own class names (the tiny model on datasets without a table). ``layout``: the rectification state
    installed in the UNet (None for ControlNet). ``control``: the control image of a label map ((3, H, W) float in
    [0, 1]) for a ControlNet pipeline.
    """

    def __init__(
        self,
        name: str,
        pipe: Any,
        options: SamplingOptions,
        *,
        names: Optional[Sequence[str]],
        settings: Dict[str, Any],
        weight_files: Sequence[str] = (),
        layout: Optional[RectificationLayout] = None,
        control: Optional[Callable[[np.ndarray], torch.Tensor]] = None,
    ) -> None:
        scale, size = pipe.vae_scale_factor, options.size
        if size <= 0 or size % scale:
            raise GenerationError(f"--size {size}: must be a positive multiple of {scale} (the VAE's downsampling)")
        if options.steps < 1:
            raise GenerationError(f"--steps {options.steps}: must be at least 1")
        self.name, self.options, self.pipe = name, options, pipe
        self.names = None if names is None else tuple(names)
        self.latent_shape: Tuple[int, int, int] = (pipe.unet.config.in_channels, size // scale, size // scale)
        self.layout, self.control = layout, control
        self._settings = dict(settings)
        self._weight_files = list(weight_files)
        self._builders: Dict[Tuple[str, ...], CaptionBuilder] = {}
        self._negative: Optional[torch.Tensor] = None
        # Requests per pipeline call: all on a GPU, one at a time on a CPU (see the module docstring).
        self.micro_batch: Optional[int] = None if pipe.device.type == "cuda" else 1

    def weight_files(self) -> List[str]:
        return list(self._weight_files)

    def settings(self) -> Dict[str, Any]:
        return {
            "backend": self.name,
            "steps": self.options.steps,
            "guidance": self.options.guidance,
            "size": self.options.size,
            "scheduler": "PNDMScheduler(skip_prk_steps=True)",
            "rectified_attention": self.layout is not None,
            "dtype": self.options.dtype,
            "compile": self.options.compile_unet,
            **self._settings,
        }

    def _captions(self, requests: Sequence[Any]) -> List[Caption]:
        captions = []
        for request in requests:
            names = tuple(request.class_names) if self.names is None else self.names
            if len(request.class_names) != len(names):
                raise GenerationError(
                    f"mask {request.stem}: its dataset has {len(request.class_names)} classes, this backend's name "
                    f"table {len(names)}; pass the dataset the backend was built for"
                )
            if names not in self._builders:
                self._builders[names] = CaptionBuilder(names, self.pipe.tokenizer, self.options.ignore_label)
            caption = self._builders[names](np.asarray(request.labels))
            if caption.dropped:
                logger.warning(
                    "mask %s: the caption of all its classes exceeds CLIP's 75 tokens; classes %s (the smallest by "
                    "area) left out of the caption, their pixels attend only to the start/end/padding tokens",
                    request.stem,
                    list(caption.dropped),
                )
            captions.append(caption)
        return captions

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        encoder = self.pipe.text_encoder
        return encoder(ids.to(encoder.device))[0].to(self.pipe.unet.dtype)

    def _negative_embeds(self, batch: int) -> torch.Tensor:
        if self._negative is None:
            builder = next(iter(self._builders.values()))
            self._negative = self._embed(torch.tensor([builder.empty().input_ids]))
        return self._negative.expand(batch, -1, -1)

    @torch.inference_mode()
    def generate(self, requests: Sequence[Any], latents: torch.Tensor) -> List[np.ndarray]:
        if len(requests) != latents.shape[0] or tuple(latents.shape[1:]) != self.latent_shape:
            raise ValueError(f"latents {tuple(latents.shape)} for {len(requests)} requests of {self.latent_shape}")
        size = self.options.size
        for request in requests:
            if tuple(np.shape(request.labels)) != (size, size):
                raise ValueError(f"mask {request.stem}: labels {np.shape(request.labels)}, expected {size}x{size}")
        step = self.micro_batch or len(requests)
        images: List[np.ndarray] = []
        for start in range(0, len(requests), step):
            images += self._run(requests[start : start + step], latents[start : start + step])
        return images

    def _run(self, requests: Sequence[Any], latents: torch.Tensor) -> List[np.ndarray]:
        captions = self._captions(requests)
        ids = torch.tensor([c.input_ids for c in captions])
        kwargs: Dict[str, Any] = {}
        if self.control is not None:
            kwargs["image"] = torch.stack([self.control(np.asarray(r.labels)) for r in requests])
        if self.layout is not None:
            labels = torch.from_numpy(np.stack([np.asarray(r.labels, dtype=np.int64) for r in requests]))
            tokens = torch.from_numpy(np.stack([c.token_labels() for c in captions]))
            self.layout.set(labels, tokens, self.latent_shape[1:])
        try:
            images = self.pipe(
                prompt_embeds=self._embed(ids),
                negative_prompt_embeds=self._negative_embeds(len(requests)),
                latents=latents.to(self.pipe.device, self.pipe.unet.dtype),
                num_inference_steps=self.options.steps,
                guidance_scale=self.options.guidance,
                height=self.options.size,
                width=self.options.size,
                output_type="np",
                **kwargs,
            ).images
        finally:
            if self.layout is not None:
                self.layout.clear()
        return [(np.asarray(image, dtype=np.float32) * 255).round().clip(0, 255).astype(np.uint8) for image in images]
