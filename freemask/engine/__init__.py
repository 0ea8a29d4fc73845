"""Training loop, process launching and per-process set-up.

``Trainer`` is imported on first use (PEP 562): it pulls in the model zoo and timm, which the early checks of
train_net.py and the tools (``setup_cfg``, ``register_custom_dataset``) do not need, so a missing dataset or an
unwritable OUTPUT_DIR is reported seconds sooner.
"""

from typing import Any

from .defaults import default_setup, setup_cfg
from .launch import launch


def __getattr__(name: str) -> Any:
    if name == "Trainer":
        from .trainer import Trainer

        return Trainer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Trainer", "default_setup", "launch", "setup_cfg"]
