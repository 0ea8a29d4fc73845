from .checkpointer import Checkpointer, CheckpointError
from .trained_model import load_trained_model

__all__ = ["Checkpointer", "CheckpointError", "load_trained_model"]
