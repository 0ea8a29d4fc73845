from . import mix_transformer, semask_swin, timm_backbone, vit  # noqa: F401  (registration)
from .base import Backbone, ShapeSpec

__all__ = ["Backbone", "ShapeSpec"]
