"""Check converted tensors against the model a config builds: every key filled, nothing extra, every shape equal.

The model is built on the ``meta`` device, so a Swin-L Mask2Former costs neither memory nor initialisation time, and
without its weight files (pre-trained backbone, CLIP, stage-1 prompt): only names and shapes are compared. A model
with a part that moves itself to a device while being built (open_clip's ``create_model``, in FreeSeg's models)
cannot be built on ``meta`` and is built on the CPU instead.
"""

import logging
from collections.abc import Mapping

import torch

from ...config import CfgNode
from .convert import ConversionReport

_COUNTER = "num_batches_tracked"


def model_state_from_config(cfg: CfgNode) -> dict[str, torch.Tensor]:
    """``{name: tensor}`` of the model ``cfg`` builds without weight files (meta tensors where it can be)."""
    from ...modeling import build_model  # imports timm and every registered model: only when a check is asked for

    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.BACKBONE.PRETRAINED = ""
    cfg.MODEL.CLIP_ADAPTER.CLIP_WEIGHTS = ""
    cfg.MODEL.CLIP_ADAPTER.PROMPT_CHECKPOINT = ""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # "random weights" warnings: the values are never used here
    try:
        cfg.MODEL.DEVICE = "meta"
        try:
            with torch.device("meta"):
                return dict(build_model(cfg).state_dict())
        except NotImplementedError:  # a part moved itself to a device: meta tensors cannot be copied
            cfg.MODEL.DEVICE = "cpu"
            return dict(build_model(cfg).state_dict())
    finally:
        logging.disable(previous)


def check_against_model(report: ConversionReport, model_state: Mapping[str, torch.Tensor]) -> None:
    """Fill ``report.missing/unexpected/mismatched`` and order ``report.tensors`` like the model's state dict.

    BatchNorm step counters (``num_batches_tracked``) are reconciled rather than reported: detectron2 files keep
    FrozenBN and have none, mmseg files have them, and a counter does not change what the model computes in eval.
    """
    tensors = report.tensors
    for key, value in model_state.items():
        if key.endswith(_COUNTER) and key not in tensors:
            tensors[key] = torch.zeros((), dtype=value.dtype)
            report.counters_added.append(key)
    for key in [k for k in tensors if k.endswith(_COUNTER) and k not in model_state]:
        del tensors[key]
        report.counters_removed.append(key)
    report.missing = [k for k in model_state if k not in tensors]
    report.unexpected = [k for k in tensors if k not in model_state]
    report.mismatched = [
        (k, tuple(tensors[k].shape), tuple(v.shape))
        for k, v in model_state.items()
        if k in tensors and tuple(tensors[k].shape) != tuple(v.shape)
    ]
    ordered = {k: tensors[k] for k in model_state if k in tensors}
    ordered.update({k: v for k, v in tensors.items() if k not in model_state})
    report.tensors = ordered
    report.checked_against_model = True
