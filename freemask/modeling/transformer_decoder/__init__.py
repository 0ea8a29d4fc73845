"""Query-based transformer decoders of mask-classification models. Importing registers them."""

from .mask2former_decoder import MultiScaleMaskedTransformerDecoder

__all__ = ["MultiScaleMaskedTransformerDecoder"]
