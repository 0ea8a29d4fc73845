"""``MODEL.DEVICE`` as a torch device, decided when a model is built rather than when the defaults are imported.

The default ``"auto"`` is the same on every machine, so a dumped ``config.yaml`` records what the user asked for
(``auto``, ``cpu``, ``cuda:1``) instead of which machine happened to write it; every reader of the key goes through
:func:`resolve_device`.
"""

from typing import TYPE_CHECKING

from ..errors import ConfigError
from .config import CfgNode

if TYPE_CHECKING:
    import torch


def resolve_device(cfg: CfgNode) -> "torch.device":
    """``MODEL.DEVICE`` of ``cfg``: ``auto`` is CUDA when a GPU is visible and the CPU otherwise; any other value is
    a torch device name (``cpu``, ``cuda``, ``cuda:1``, ``meta``)."""
    import torch  # here: reading a config (train_net.py --help, the data tools) does not need torch

    name = cfg.MODEL.DEVICE
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"MODEL.DEVICE {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
