"""The one way to get a trained model for inference: evaluation (``--eval-only``), the FreeMask filter and the demo.

A model used to produce numbers or pictures must be the one that was trained: the weights are loaded strictly
(a mismatch is an error, not a log line) and with ``weights_only`` unless MODEL.ALLOW_UNSAFE_WEIGHTS.
"""

import torch
from torch import nn

from ..config import CfgNode, ConfigError, resolve_device
from .checkpointer import Checkpointer, CheckpointError


def load_trained_model(cfg: CfgNode, purpose: str) -> nn.Module:
    """The model of ``cfg`` with MODEL.WEIGHTS loaded strictly, in eval mode, on MODEL.DEVICE.

    ``purpose`` completes the error when MODEL.WEIGHTS is empty, e.g. "--eval-only needs the weights to evaluate".
    """
    if not cfg.MODEL.WEIGHTS:
        raise CheckpointError(f"{purpose}: append MODEL.WEIGHTS path/to/model_final.pth")
    if resolve_device(cfg).type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"MODEL.DEVICE is {cfg.MODEL.DEVICE} but no GPU is available; append MODEL.DEVICE cpu")
    from ..modeling import build_model  # here: the model zoo imports timm, which the checkpoint tools do not need

    model = build_model(cfg)
    Checkpointer(model, allow_unsafe=cfg.MODEL.ALLOW_UNSAFE_WEIGHTS, strict=True).load(cfg.MODEL.WEIGHTS)
    return model.eval()
