from .build import build_gradient_clipper, build_lr_scheduler, build_optimizer, build_param_scheduler
from .param_groups import build_param_groups

__all__ = [
    "build_gradient_clipper",
    "build_lr_scheduler",
    "build_optimizer",
    "build_param_groups",
    "build_param_scheduler",
]
