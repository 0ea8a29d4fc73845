"""Models: the registries and builders, with every built-in backbone, head and meta-architecture registered.

Importing this package imports every built-in part (timm included), each of which registers itself in
:mod:`.registry` as its module loads; :mod:`.build` looks the names up. Any import of ``freemask.modeling.<sub>``
runs this file first, so a name is registered as soon as any module of the package is. The command-line scripts keep
``--help`` fast by importing the library inside their ``main``, not by this package loading late.
"""

from . import backbone, heads, meta_arch, pixel_decoder, transformer_decoder  # noqa: F401  (importing registers)
from .build import build_backbone, build_model, build_sem_seg_head
from .registry import (
    BACKBONE_REGISTRY,
    META_ARCH_REGISTRY,
    PIXEL_DECODER_REGISTRY,
    SEM_SEG_HEADS_REGISTRY,
    TRANSFORMER_DECODER_REGISTRY,
)

__all__ = [
    "BACKBONE_REGISTRY",
    "META_ARCH_REGISTRY",
    "PIXEL_DECODER_REGISTRY",
    "SEM_SEG_HEADS_REGISTRY",
    "TRANSFORMER_DECODER_REGISTRY",
    "build_backbone",
    "build_model",
    "build_sem_seg_head",
]
