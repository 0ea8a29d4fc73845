"""Pixel decoders of mask-classification models; importing registers them in PIXEL_DECODER_REGISTRY."""

from .msdeformattn_decoder import MSDeformAttnPixelDecoder
from .position_encoding import PositionEmbeddingSine

__all__ = ["MSDeformAttnPixelDecoder", "PositionEmbeddingSine"]
