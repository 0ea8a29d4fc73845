"""FreeSeg's open-vocabulary pieces shared by its two stages: the class vocabulary and the task drawn per iteration."""

from .tasks import TASK_NAMES, TaskSampler
from .vocabulary import Vocabulary

__all__ = ["TASK_NAMES", "TaskSampler", "Vocabulary"]
