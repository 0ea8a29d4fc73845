from . import encoder_decoder, mask_former, open_vocabulary, prompt_classifier, semask_fpn  # noqa: F401  (registration)
from .base import SemanticSegmentor

__all__ = ["SemanticSegmentor"]
