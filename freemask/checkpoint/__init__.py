from .checkpointer import Checkpointer, CheckpointError

__all__ = ["Checkpointer", "CheckpointError"]
