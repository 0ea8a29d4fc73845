"""Test-time inference (whole / sliding window / multi-scale + flip), semantic-segmentation metrics, evaluation loop."""

from .evaluator import inference_on_dataset
from .inference import SegmentationInference
from .sem_seg import SemSegEvaluator

__all__ = ["SemSegEvaluator", "SegmentationInference", "inference_on_dataset"]
