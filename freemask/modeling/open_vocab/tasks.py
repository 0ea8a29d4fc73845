"""Which task (semantic / instance / panoptic) a FreeSeg training iteration trains.

FreeSeg draws ``random.choice(INPUT.TASK_NAME)`` per iteration and per process, unseeded (bytedance/FreeSeg,
mask2former/open_vocabulary_model.py, ``OpenVocabulary.forward``), so the processes of one step train different tasks
and a run cannot be repeated. Here the draw comes from a generator seeded once (the run's SEED, shared by every rank)
and indexed by the training step, so every rank draws the same task at the same step and a run with the same seed
draws the same sequence. The model counts its own training steps (a buffer saved with its weights), so a resumed run
continues the sequence where it stopped.
"""

import random
from typing import Sequence

from ...config import ConfigError

TASK_NAMES = ("semantic segmentation.", "instance segmentation.", "panoptic segmentation.")


def task_key(task_name: str) -> str:
    """"panoptic segmentation." -> "panoptic": the short name used in target keys."""
    return task_name.split()[0]


class TaskSampler:
    """The task of training step ``i`` is a function of ``(seed, i)`` alone."""

    def __init__(self, task_names: Sequence[str], seed: int) -> None:
        unknown = [t for t in task_names if t not in TASK_NAMES]
        if not task_names or unknown:
            raise ConfigError(f"INPUT.TASK_NAME must list tasks among {list(TASK_NAMES)}, got {list(task_names)}")
        self.task_names = tuple(task_names)
        self.seed = int(seed)

    def task_at(self, step: int) -> str:
        if len(self.task_names) == 1:
            return self.task_names[0]
        return random.Random(self.seed * 1_000_003 + step).choice(self.task_names)
