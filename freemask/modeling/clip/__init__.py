"""FreeSeg's CLIP side on open-clip-torch: the frozen CLIP, the adaptive prompts and the region classifier."""

from .errors import ClipError
from .model import TINY_CLIP_NAME, FrozenClip, build_clip
from .prompts import (
    LearnablePrompt,
    PredefinedPrompts,
    PromptLearner,
    build_prompt_learner,
    load_prompt_checkpoint,
)
from .regions import RegionClassifier, crop_regions, region_logits
from .weights import convert_torchscript

__all__ = [
    "TINY_CLIP_NAME",
    "ClipError",
    "FrozenClip",
    "LearnablePrompt",
    "PredefinedPrompts",
    "PromptLearner",
    "RegionClassifier",
    "build_clip",
    "build_prompt_learner",
    "convert_torchscript",
    "crop_regions",
    "load_prompt_checkpoint",
    "region_logits",
]
