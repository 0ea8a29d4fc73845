"""Models: the registries and builders, with every built-in backbone, head and meta-architecture registered.

The package's names (``build_model``, ``BACKBONE_REGISTRY``, ...) load on first use (PEP 562), and with them the
whole model zoo (timm included). Nothing is imported here eagerly, so a sub-package that needs none of it, such as
``freemask.modeling.ops`` (the deformable-attention op, used alone by its tests and ``bench/ms_deform_attn.py``),
imports without the registries, the builders and the models that would import it back.
"""

from typing import Any

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


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import build

    build.register_builtins()
    value = getattr(build, name)
    globals()[name] = value  # later lookups skip this function
    return value
