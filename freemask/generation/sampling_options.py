"""The sampling values every image generator takes, in their own module: the backends (:mod:`.freestylenet`,
:mod:`.controlnet`, :mod:`.diffusion`, :mod:`.tiny`) import them, and the dispatcher (:mod:`.backend`) imports the
backends, so they cannot live in the dispatcher without an import loop."""

from dataclasses import dataclass


@dataclass(frozen=True)
class SamplingOptions:
    """The values every backend samples with: steps, guidance scale, image size (square), where and at which
    precision it runs (``dtype``: float32 | float16 (GPU) | bfloat16), the dataset's ignore label and whether the
    UNet is ``torch.compile``-d."""

    steps: int
    guidance: float
    size: int
    device: str
    dtype: str
    ignore_label: int
    compile_unet: bool = False
