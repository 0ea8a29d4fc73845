"""A tiny MSDeformAttnPixelDecoder and random features for it (imported by conftest.py only)."""

import math

import torch

from freemask.modeling.backbone.base import ShapeSpec
from freemask.modeling.pixel_decoder import MSDeformAttnPixelDecoder

SHAPES = {"res2": ShapeSpec(16, 4), "res3": ShapeSpec(24, 8), "res4": ShapeSpec(40, 16), "res5": ShapeSpec(48, 32)}


def build(**kwargs) -> MSDeformAttnPixelDecoder:
    """Seeded, 2 encoder layers of width 32; ``kwargs`` override the constructor arguments."""
    torch.manual_seed(0)
    args = {
        "conv_dim": 32,
        "mask_dim": 24,
        "transformer_enc_layers": 2,
        "transformer_nheads": 4,
        "transformer_dim_feedforward": 64,
    }
    args.update(kwargs)
    return MSDeformAttnPixelDecoder(SHAPES, **args)


def features(n: int, h: int, w: int, seed: int = 0) -> dict:
    """Random backbone features of ``n`` images of ``h`` x ``w`` at the strides of ``SHAPES``."""
    g = torch.Generator().manual_seed(seed)
    return {
        k: torch.randn(n, s.channels, math.ceil(h / s.stride), math.ceil(w / s.stride), generator=g)
        for k, s in SHAPES.items()
    }
