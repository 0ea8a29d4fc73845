import math

import pytest
import torch
from torch import nn

from freemask.config import ConfigError, get_cfg
from freemask.solver import build_gradient_clipper, build_lr_scheduler, build_optimizer, build_param_groups


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
        self.query_embed = nn.Embedding(5, 4)
        self.decode_head = nn.Sequential(nn.Conv2d(4, 4, 1), nn.GroupNorm(2, 4), nn.LayerNorm(4))
        self.level_embed = nn.Parameter(torch.zeros(3, 4))


def settings_of(groups, model):
    by_param = {}
    for g in groups:
        for p in g["params"]:
            by_param[id(p)] = (g["lr"], g["weight_decay"])
    return {name: by_param[id(p)] for name, p in model.named_parameters()}


def test_param_groups_norm_embed_backbone_and_custom_keys():
    model = Toy()
    groups = build_param_groups(
        model,
        base_lr=1.0,
        weight_decay=0.05,
        weight_decay_norm=0.0,
        weight_decay_embed=0.01,
        backbone_multiplier=0.1,
        custom_multipliers=[("decode_head.0", 10.0, 2.0)],
    )
    s = settings_of(groups, model)
    assert s["backbone.0.weight"] == (0.1, 0.05)
    assert s["backbone.1.weight"] == (0.1, 0.0) and s["backbone.1.bias"] == (0.1, 0.0)
    assert s["query_embed.weight"] == (1.0, 0.01)
    assert s["level_embed"] == (1.0, 0.01)
    assert s["decode_head.0.weight"] == (10.0, 0.1)
    assert s["decode_head.1.weight"] == (1.0, 0.0) and s["decode_head.2.bias"] == (1.0, 0.0)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_frozen_parameters_are_left_out():
    model = Toy()
    model.backbone.requires_grad_(False)
    groups = build_param_groups(model, base_lr=1.0, weight_decay=0.0, weight_decay_norm=0.0, weight_decay_embed=0.0)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters())) - 4


def lrs(cfg, steps):
    param = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=cfg.SOLVER.BASE_LR)
    sched = build_lr_scheduler(cfg, opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def solver_cfg(**overrides):
    cfg = get_cfg()
    cfg.SOLVER.BASE_LR = 1.0
    cfg.SOLVER.MAX_ITER = 100
    for k, v in overrides.items():
        setattr(cfg.SOLVER, k, v)
    return cfg


def test_poly_schedule_with_linear_warmup():
    out = lrs(solver_cfg(POLY_LR_POWER=0.9, WARMUP_ITERS=10, WARMUP_FACTOR=0.1), 100)
    end_of_warmup = (1 - 0.1) ** 0.9
    assert out[0] == pytest.approx(0.1 * end_of_warmup)
    assert out[5] == pytest.approx(end_of_warmup * (0.1 + 0.9 * 0.5))
    for it in (10, 50, 99):
        assert out[it] == pytest.approx((1 - it / 100) ** 0.9)


def test_poly_and_cosine_decay_to_base_lr_end():
    out = lrs(solver_cfg(POLY_LR_POWER=0.9, BASE_LR_END=0.1), 100)
    for it in (0, 37, 99):
        assert out[it] == pytest.approx(0.1 + 0.9 * (1 - it / 100) ** 0.9)
    cos = lrs(solver_cfg(LR_SCHEDULER_NAME="WarmupCosineLR", BASE_LR_END=0.2), 100)
    assert cos[50] == pytest.approx(0.6) and cos[99] == pytest.approx(0.2, abs=1e-3)


def test_cosine_and_step_schedules():
    cos = lrs(solver_cfg(LR_SCHEDULER_NAME="WarmupCosineLR"), 100)
    assert cos[0] == pytest.approx(1.0) and cos[50] == pytest.approx(0.5) and cos[99] < 0.01
    step = lrs(solver_cfg(LR_SCHEDULER_NAME="WarmupMultiStepLR", STEPS=[30, 60], GAMMA=0.5), 100)
    assert step[29] == 1.0 and step[30] == 0.5 and step[60] == 0.25


def test_unknown_scheduler_and_optimizer_fail_clearly():
    with pytest.raises(ConfigError, match="LR_SCHEDULER_NAME"):
        lrs(solver_cfg(LR_SCHEDULER_NAME="Poly"), 1)
    cfg = solver_cfg(OPTIMIZER="LAMB")
    with pytest.raises(ConfigError, match="SOLVER.OPTIMIZER"):
        build_optimizer(cfg, Toy())


def test_sgd_and_adamw_built_with_groups():
    cfg = solver_cfg(OPTIMIZER="SGD", MOMENTUM=0.8)
    opt = build_optimizer(cfg, Toy())
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.8
    cfg = solver_cfg(OPTIMIZER="ADAMW", BETAS=[0.8, 0.9])
    opt = build_optimizer(cfg, Toy())
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["betas"] == (0.8, 0.9)


def grads(values):
    params = [nn.Parameter(torch.zeros(len(v))) for v in values]
    for p, v in zip(params, values):
        p.grad = torch.tensor(v, dtype=torch.float32)
    return params


@pytest.mark.parametrize("clip_type", ["full_model", "value", "norm"])
def test_gradient_clipping(clip_type):
    cfg = get_cfg()
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = True
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = clip_type
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 1.0
    params = grads([[3.0, 4.0], [0.0, 0.5]])
    build_gradient_clipper(cfg)(params)
    g0, g1 = (p.grad.tolist() for p in params)
    if clip_type == "full_model":  # total norm sqrt(25.25) scaled to 1
        scale = 1.0 / math.sqrt(25.25)
        assert g0 == pytest.approx([3 * scale, 4 * scale], rel=1e-4) and g1 == pytest.approx([0, 0.5 * scale], rel=1e-4)
    elif clip_type == "value":
        assert g0 == [1.0, 1.0] and g1 == [0.0, 0.5]
    else:  # each parameter's norm clipped separately
        assert g0 == pytest.approx([0.6, 0.8], rel=1e-4) and g1 == pytest.approx([0.0, 0.5])


def test_clipping_disabled_leaves_gradients():
    params = grads([[3.0, 4.0]])
    build_gradient_clipper(get_cfg())(params)
    assert params[0].grad.tolist() == [3.0, 4.0]


@pytest.mark.parametrize("max_iter", [20, 50])
def test_warmup_covering_the_whole_run_starts_at_warmup_factor(max_iter, caplog):
    # detectron2's warm-up factor at iteration i < WARMUP_ITERS: WARMUP_FACTOR + (1 - WARMUP_FACTOR) * i / WARMUP_ITERS
    out = lrs(solver_cfg(MAX_ITER=max_iter, WARMUP_ITERS=50, WARMUP_FACTOR=0.1), max_iter)
    for it in (0, 10, max_iter - 1):
        assert out[it] == pytest.approx(0.1 + 0.9 * it / 50)
    assert "covers the whole run" in caplog.text and "SOLVER.WARMUP_ITERS 50" in caplog.text
    constant = lrs(solver_cfg(MAX_ITER=max_iter, WARMUP_ITERS=50, WARMUP_FACTOR=0.1, WARMUP_METHOD="constant"), 5)
    assert constant == pytest.approx([0.1] * 5)


def test_warmup_within_the_run_does_not_warn(caplog):
    lrs(solver_cfg(WARMUP_ITERS=10), 1)
    assert "covers the whole run" not in caplog.text
