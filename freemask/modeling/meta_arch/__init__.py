from . import mask_former, semantic_fpn  # noqa: F401  (registration)
from .base import SemanticSegmentor

__all__ = ["SemanticSegmentor"]
