from . import timm_backbone  # noqa: F401  (registration)
from .base import Backbone, ShapeSpec

__all__ = ["Backbone", "ShapeSpec"]
