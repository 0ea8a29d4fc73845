"""Dataset loaders and registration. Importing registers the builtin datasets (lazily: no disk access)."""

from .sem_seg import load_sem_seg, register_sem_seg
from .toy import register_toy

register_toy()

__all__ = ["load_sem_seg", "register_sem_seg", "register_toy"]
