"""Operators with a PyTorch reference path and a slot for a compiled implementation."""

from .deform_attn import MSDeformAttn, ms_deform_attn
from .deform_attn_pytorch import ms_deform_attn_pytorch, set_compiled_ms_deform_attn

__all__ = ["MSDeformAttn", "ms_deform_attn", "ms_deform_attn_pytorch", "set_compiled_ms_deform_attn"]
