"""Conversion of released checkpoints (official Mask2Former, FreeSeg and SeMask-FPN; FreeMask's MMSegmentation
Mask2Former, SegFormer and Segmenter models) to our layout.

Each supported layout is a small module holding a table of key rules (``rules.py`` explains the notation);
``tools/convert_checkpoint.py`` is the command line.
"""

from .convert import LAYOUTS, ConversionReport, convert_checkpoint, save_converted
from .layout import Fill, Layout, Variant
from .model_check import check_against_model, model_state_from_config
from .rules import Drop, Refuse, Rule, Split, Transform, apply_table

__all__ = [
    "LAYOUTS",
    "ConversionReport",
    "Drop",
    "Fill",
    "Layout",
    "Refuse",
    "Rule",
    "Split",
    "Transform",
    "Variant",
    "apply_table",
    "check_against_model",
    "convert_checkpoint",
    "model_state_from_config",
    "save_converted",
]
