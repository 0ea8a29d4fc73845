from . import encoder_decoder, mask_former  # noqa: F401  (registration)
from .base import SemanticSegmentor

__all__ = ["SemanticSegmentor"]
