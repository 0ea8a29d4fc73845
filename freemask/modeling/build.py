"""The builders that turn a config into modules, looking the configured names up in :mod:`.registry`.

A new meta-architecture, backbone or head is a class registered with one decorator and a ``from_config`` class
method; nothing else in the engine needs to change. The meta-architectures import the lower builders from here
(``build_backbone`` ...), and this module imports no meta-architecture or head, so the graph has no loop. The
built-in parts are registered before any lookup: importing this module runs ``freemask/modeling/__init__.py`` first,
which imports every part.
"""

from typing import Dict

from fvcore.common.registry import Registry
from torch import nn

from ..config import CfgNode, ConfigError, resolve_device
from .backbone.base import Backbone, ShapeSpec
from .backbone.mix_transformer import segformer_spec
from .ops.ms_deform_attn_cuda import set_ms_deform_attn_impl
from .registry import (
    BACKBONE_REGISTRY,
    META_ARCH_REGISTRY,
    PIXEL_DECODER_REGISTRY,
    SEM_SEG_HEADS_REGISTRY,
    TRANSFORMER_DECODER_REGISTRY,
)


def _lookup(registry: Registry, name: str, key: str):
    try:
        return registry.get(name)
    except KeyError:
        known = ", ".join(sorted(name for name, _ in registry))
        raise ConfigError(f"{key} '{name}' is not registered; registered: {known}") from None


def build_backbone(cfg: CfgNode) -> Backbone:
    """The backbone of ``MODEL.BACKBONE.NAME``, built from ``MODEL.BACKBONE.*`` alone, unset keys filled in first."""
    cls = _lookup(BACKBONE_REGISTRY, cfg.MODEL.BACKBONE.NAME, "MODEL.BACKBONE.NAME")
    return cls(**cls.from_config(fill_backbone_keys(cfg)))


def fill_backbone_keys(cfg: CfgNode) -> CfgNode:
    """``cfg`` with the backbone keys left at "as the rest of the model says" filled in from it.

    A backbone reads only its own keys, yet two values must agree with another part of the config: the ViT's position
    table is sized for the training crop (``MODEL.BACKBONE.VIT.IMG_SIZE`` [] -> ``INPUT.CROP.SIZE``) and SeMask's
    prior maps have the head's classes (``MODEL.BACKBONE.SEMASK.NUM_CLASSES`` 0 -> ``MODEL.SEM_SEG_HEAD.NUM_CLASSES``).
    The coupling lives here, once, and a config that sets either key decides it itself. ``cfg`` is not changed.
    """
    b = cfg.MODEL.BACKBONE
    if b.VIT.IMG_SIZE and b.SEMASK.NUM_CLASSES:
        return cfg
    cfg = cfg.clone()
    cfg.defrost()
    b = cfg.MODEL.BACKBONE
    b.VIT.IMG_SIZE = list(b.VIT.IMG_SIZE or cfg.INPUT.CROP.SIZE)
    b.SEMASK.NUM_CLASSES = b.SEMASK.NUM_CLASSES or cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
    cfg.freeze()
    return cfg


def fill_head_keys(cfg: CfgNode) -> CfgNode:
    """``cfg`` with SegFormer's decoder width left at "as the encoder says" filled in from it
    (``MODEL.SEGFORMER.DECODER_DIM`` 0 -> the paper's width for ``MODEL.BACKBONE.MIT.VARIANT``), as
    :func:`fill_backbone_keys` does for the backbone: the head reads only its own key. ``cfg`` is not changed."""
    if cfg.MODEL.SEGFORMER.DECODER_DIM:
        return cfg
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.SEGFORMER.DECODER_DIM = segformer_spec(cfg.MODEL.BACKBONE.MIT.VARIANT).decoder_dim
    cfg.freeze()
    return cfg


def build_sem_seg_head(cfg: CfgNode, input_shape: Dict[str, ShapeSpec]) -> nn.Module:
    cls = _lookup(SEM_SEG_HEADS_REGISTRY, cfg.MODEL.SEM_SEG_HEAD.NAME, "MODEL.SEM_SEG_HEAD.NAME")
    return cls(input_shape, **cls.from_config(cfg, input_shape))


def build_pixel_decoder(cfg: CfgNode, input_shape: Dict[str, ShapeSpec]) -> nn.Module:
    cls = _lookup(
        PIXEL_DECODER_REGISTRY, cfg.MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME, "MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME"
    )
    return cls(input_shape, **cls.from_config(cfg, input_shape))


def build_transformer_decoder(cfg: CfgNode, in_channels: int) -> nn.Module:
    name = cfg.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME
    cls = _lookup(TRANSFORMER_DECODER_REGISTRY, name, "MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME")
    return cls(**cls.from_config(cfg, in_channels))


def build_model(cfg: CfgNode) -> nn.Module:
    """Build ``cfg.MODEL.META_ARCHITECTURE`` and move it to ``cfg.MODEL.DEVICE`` (``auto``: CUDA if available).

    Also records ``MODEL.MSDA_IMPL``, the process-wide choice of deformable-attention implementation.
    """
    set_ms_deform_attn_impl(cfg.MODEL.MSDA_IMPL)
    cls = _lookup(META_ARCH_REGISTRY, cfg.MODEL.META_ARCHITECTURE, "MODEL.META_ARCHITECTURE")
    model = cls(**cls.from_config(cfg))
    return model.to(resolve_device(cfg))
