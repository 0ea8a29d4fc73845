from . import mix_transformer  # noqa: F401  (registration)
from . import timm_backbone  # noqa: F401  (registration)
from . import vit  # noqa: F401  (registration)
from .base import Backbone, ShapeSpec

__all__ = ["Backbone", "ShapeSpec"]
