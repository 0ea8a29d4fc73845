"""The five registries of the parts users extend: a leaf module that imports nothing of the model.

Every part imports its registry from here and registers itself with the decorator when its module is imported;
:mod:`freemask.modeling.build` looks the names up. Because this module imports no part, a part never imports the
builders (or another part) just to register, and the import graph has no loop (detectron2 keeps each registry beside
its builder, e.g. facebookresearch/detectron2, detectron2/modeling/backbone/build.py, BACKBONE_REGISTRY; here the five
are together so that one file lists every extension point).
"""

from fvcore.common.registry import Registry

META_ARCH_REGISTRY = Registry("META_ARCH")
META_ARCH_REGISTRY.__doc__ = "Whole models: ``cls.from_config(cfg)`` returns the constructor's keyword arguments."
BACKBONE_REGISTRY = Registry("BACKBONE")
BACKBONE_REGISTRY.__doc__ = "Feature extractors returning ``{name: (N, C, H/stride, W/stride)}``; see Backbone."
SEM_SEG_HEADS_REGISTRY = Registry("SEM_SEG_HEADS")
SEM_SEG_HEADS_REGISTRY.__doc__ = (
    "Heads mapping backbone features to per-class outputs, built from the backbone's shapes."
)
PIXEL_DECODER_REGISTRY = Registry("PIXEL_DECODER")
PIXEL_DECODER_REGISTRY.__doc__ = "Pixel decoders of mask-classification models (Mask2Former's MSDeformAttn decoder)."
TRANSFORMER_DECODER_REGISTRY = Registry("TRANSFORMER_DECODER")
TRANSFORMER_DECODER_REGISTRY.__doc__ = "Query-based transformer decoders of mask-classification models."
