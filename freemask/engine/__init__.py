"""Training loop, process launching and per-process set-up.

The package exports the set-up and the launcher only; the training loop is ``freemask.engine.trainer.Trainer``.
Importing the trainer imports the model zoo (timm included), which the early checks of train_net.py and the tools
(``setup_cfg``, ``register_custom_dataset``) do not need: keeping it out of this file lets a missing dataset or an
unwritable OUTPUT_DIR be reported seconds sooner, without any name loading late.
"""

from .defaults import default_setup, setup_cfg
from .launch import launch

__all__ = ["default_setup", "launch", "setup_cfg"]
