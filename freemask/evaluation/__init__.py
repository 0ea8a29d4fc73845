"""Test-time inference (whole / sliding window / multi-scale + flip), semantic, panoptic and instance metrics, the
evaluation loop."""

from .classification import ClassificationEvaluator
from .combined import DatasetEvaluators
from .evaluator import inference_on_dataset
from .instance_evaluator import InstanceSegEvaluator
from .panoptic_evaluator import COCOPanopticEvaluator
from .sem_seg import SemSegEvaluator

__all__ = [
    "ClassificationEvaluator",
    "COCOPanopticEvaluator",
    "DatasetEvaluators",
    "InstanceSegEvaluator",
    "SemSegEvaluator",
    "inference_on_dataset",
]
