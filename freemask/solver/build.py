"""Optimizer, learning-rate schedule and gradient clipping from the SOLVER config."""

import logging
from typing import Callable, Iterable

import torch
from fvcore.common.param_scheduler import (
    CompositeParamScheduler,
    ConstantParamScheduler,
    CosineParamScheduler,
    LinearParamScheduler,
    MultiStepParamScheduler,
    ParamScheduler,
)
from torch import nn

from ..config import CfgNode, ConfigError
from .param_groups import build_param_groups

logger = logging.getLogger(__name__)


def build_optimizer(cfg: CfgNode, model: nn.Module) -> torch.optim.Optimizer:
    s = cfg.SOLVER
    for entry in s.CUSTOM_MULTIPLIERS:
        if len(entry) != 3 or not isinstance(entry[0], str):
            raise ConfigError(
                f"SOLVER.CUSTOM_MULTIPLIERS entries are [name_substring, lr_mult, decay_mult], got {entry!r}"
            )
    groups = build_param_groups(
        model,
        base_lr=s.BASE_LR,
        weight_decay=s.WEIGHT_DECAY,
        weight_decay_norm=s.WEIGHT_DECAY_NORM,
        weight_decay_embed=s.WEIGHT_DECAY_EMBED,
        backbone_multiplier=s.BACKBONE_MULTIPLIER,
        custom_multipliers=s.CUSTOM_MULTIPLIERS,
    )
    name = s.OPTIMIZER.upper()
    if name == "ADAMW":
        return torch.optim.AdamW(groups, lr=s.BASE_LR, betas=tuple(s.BETAS), eps=s.EPS)
    if name == "SGD":
        return torch.optim.SGD(groups, lr=s.BASE_LR, momentum=s.MOMENTUM)
    raise ConfigError(f"SOLVER.OPTIMIZER must be ADAMW or SGD, got {s.OPTIMIZER!r}")


def build_param_scheduler(cfg: CfgNode) -> ParamScheduler:
    """Learning-rate multiplier as a function of training progress in [0, 1), warm-up included."""
    s = cfg.SOLVER
    end_ratio = s.BASE_LR_END / s.BASE_LR if s.BASE_LR else 0.0
    if s.LR_SCHEDULER_NAME == "WarmupPolyLR":
        main: ParamScheduler = _PolyDecayToEnd(end_ratio, s.POLY_LR_POWER)
    elif s.LR_SCHEDULER_NAME == "WarmupCosineLR":
        main = CosineParamScheduler(1.0, end_ratio)
    elif s.LR_SCHEDULER_NAME == "WarmupMultiStepLR":
        steps = [x for x in s.STEPS if x <= s.MAX_ITER]
        main = MultiStepParamScheduler(
            [s.GAMMA**k for k in range(len(steps) + 1)], milestones=steps, num_updates=s.MAX_ITER
        )
    else:
        raise ConfigError(
            "SOLVER.LR_SCHEDULER_NAME must be WarmupPolyLR, WarmupCosineLR or WarmupMultiStepLR, "
            f"got {s.LR_SCHEDULER_NAME!r}"
        )
    if s.WARMUP_ITERS <= 0:
        return main
    if s.WARMUP_METHOD not in ("linear", "constant"):
        raise ConfigError(f"SOLVER.WARMUP_METHOD must be linear or constant, got {s.WARMUP_METHOD!r}")
    if s.WARMUP_ITERS >= s.MAX_ITER:
        # As detectron2's warm-up: the factor starts at WARMUP_FACTOR and (linear) rises to 1 at iteration
        # WARMUP_ITERS, counted in iterations, so a short try-out run trains at the start of the warm-up instead of
        # at the warm-up's end value main(1) = 0, which gave a learning rate of 0 for the whole run.
        logger.warning(
            "SOLVER.WARMUP_ITERS %d >= SOLVER.MAX_ITER %d: the warm-up covers the whole run and the %s decay never "
            "starts; lower SOLVER.WARMUP_ITERS for a full schedule",
            s.WARMUP_ITERS,
            s.MAX_ITER,
            s.LR_SCHEDULER_NAME,
        )
        reached = s.MAX_ITER / s.WARMUP_ITERS  # the share of the warm-up done at the end of the run
        if s.WARMUP_METHOD == "constant":
            return ConstantParamScheduler(s.WARMUP_FACTOR)
        return LinearParamScheduler(s.WARMUP_FACTOR, s.WARMUP_FACTOR + (1 - s.WARMUP_FACTOR) * reached)
    # Within the run: the warm-up ramps to the main schedule's value where it hands over (rescaled, as fvcore's
    # CompositeParamScheduler), the schedule every shipped config was checked against.
    warmup_length = s.WARMUP_ITERS / s.MAX_ITER
    end = main(warmup_length)
    if s.WARMUP_METHOD == "linear":
        warmup: ParamScheduler = LinearParamScheduler(end * s.WARMUP_FACTOR, end)
    else:
        warmup = ConstantParamScheduler(end * s.WARMUP_FACTOR)
    return CompositeParamScheduler(
        [warmup, main], lengths=[warmup_length, 1 - warmup_length], interval_scaling=["rescaled", "fixed"]
    )


class _PolyDecayToEnd(ParamScheduler):
    """``end + (1 - end) * (1 - t) ** power``: poly decay to a floor (MMSegmentation's PolyLR ``eta_min``), which
    Segmenter's recipe sets to a tenth of its base rate; with ``end`` 0 it is fvcore's polynomial decay."""

    def __init__(self, end: float, power: float) -> None:
        self.end, self.power = end, power

    def __call__(self, where: float) -> float:
        return self.end + (1.0 - self.end) * (1.0 - where) ** self.power


def build_lr_scheduler(cfg: CfgNode, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    """A torch scheduler stepping once per iteration; its state (the iteration) goes into checkpoints."""
    multiplier = build_param_scheduler(cfg)
    max_iter = cfg.SOLVER.MAX_ITER
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: multiplier(min(it / max_iter, 1.0 - 1e-9)))


def build_gradient_clipper(cfg: CfgNode) -> Callable[[Iterable[nn.Parameter]], None]:
    """A function clipping the gradients of the given parameters in place, or one doing nothing when disabled.

    ``full_model`` clips the L2 norm over all parameters at once (Mask2Former); ``value`` and ``norm`` clip each
    parameter separately (detectron2).
    """
    c = cfg.SOLVER.CLIP_GRADIENTS
    if not c.ENABLED:
        return lambda params: None
    if c.CLIP_TYPE == "full_model":
        return lambda params: nn.utils.clip_grad_norm_(list(params), c.CLIP_VALUE, c.NORM_TYPE)
    if c.CLIP_TYPE == "value":
        return lambda params: nn.utils.clip_grad_value_(list(params), c.CLIP_VALUE)
    if c.CLIP_TYPE == "norm":

        def clip_each(params: Iterable[nn.Parameter]) -> None:
            for p in params:
                nn.utils.clip_grad_norm_(p, c.CLIP_VALUE, c.NORM_TYPE)

        return clip_each
    raise ConfigError(f"SOLVER.CLIP_GRADIENTS.CLIP_TYPE must be full_model, value or norm, got {c.CLIP_TYPE!r}")
