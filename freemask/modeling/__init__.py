"""Models. Importing this package registers every built-in backbone, head and meta-architecture."""

from . import backbone, heads, meta_arch, pixel_decoder, transformer_decoder  # noqa: F401  (registration)
from .build import (
    BACKBONE_REGISTRY,
    META_ARCH_REGISTRY,
    PIXEL_DECODER_REGISTRY,
    SEM_SEG_HEADS_REGISTRY,
    TRANSFORMER_DECODER_REGISTRY,
    build_backbone,
    build_model,
    build_sem_seg_head,
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
