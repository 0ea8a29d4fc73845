"""Test-time inference modes, kept importable here for existing callers; the code lives in
``freemask/modeling/inference.py`` so that ``modeling/`` does not import ``evaluation/``."""

from ..modeling.inference import PredictFn, SegmentationInference, sliding_windows  # noqa: F401

__all__ = ["PredictFn", "SegmentationInference", "sliding_windows"]
