#!/usr/bin/env python
"""Training-step throughput and peak memory of any config's model: forward + backward + optimizer step.

    python bench/train_step.py --config-file configs/toy/semantic-segmentation/mask2former_R18_toy.yaml \
        --device cpu --batch-size 2 --size 128
    python bench/train_step.py \
        --config-file configs/ade20k/semantic-segmentation/mask2former/maskformer2_swin_tiny_bs16_160k.yaml
    (cuda defaults: batch 16, 512x512, variants fp32,bf16,bf16+cl,fp32+compile,bf16+compile; fp16 on request)
    python bench/train_step.py --config-file configs/toy/semantic-segmentation/mask2former_R18_toy.yaml \
        --variants fp32,fp32+tf32 --warmup 1 --iters 199 --loss-every 20
    (the loss curve of 200 steps with and without TF32)

Why: the choice of precision, torch.compile and memory format is made on measured images/s at the recipe's batch and
crop, with the loss shown so that a faster variant that trains differently is visible. The step is the trainer's
(``freemask/engine/trainer.py``): the model's own forward on a list of loader-style dicts (uint8 images and label
maps on the host, moved by the model), the losses summed, the project's optimizer with its parameter groups
(``build_optimizer``), its gradient clipping, and a GradScaler for fp16. The learning rate stays at the base value
(no schedule): speed does not depend on it.

Data: a pool of four random batches (uint8 noise images; blocky label maps with --classes-per-image classes and one
block in eight ignored), cycled. Every variant starts from the same weights and sees the same batches with the same
per-iteration seeds (point sampling), so the losses after the timed steps are comparable: fp32 eager is the
reference; low precision or compiled kernels move it a little, a different loss means a different computation.
All variants are built and warmed up first (peak memory is measured then, per variant), then timed in alternating
rounds of one step each. Variants also name TF32 (``+tf32``), the pixel decoder following autocast (``+mixed``) and the
deformable op's PyTorch path (``+pt``) or v3 kernels (``+v3``): see ``bench/_common.py``. ``--loss-every K`` prints
every variant's loss each K steps (warm-up included) and its largest difference from fp32's: the curve that shows
whether a faster variant trains the same.
"""

import os
import sys
from typing import List

import torch
from tabulate import tabulate

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (  # noqa: E402
    MemoryMeter,
    Variant,
    autocast,
    bench_parser,
    build_variant_model,
    check_size,
    describe_machine,
    load_config,
    memory_label,
    positive_int,
    random_images,
    random_label_maps,
    ratio,
    resolve_defaults,
    time_interleaved,
    variant_settings,
)

from freemask.config import CfgNode, ConfigError, resolve_device  # noqa: E402
from freemask.solver import build_gradient_clipper, build_optimizer  # noqa: E402

POOL = 4  # distinct batches cycled through; few enough to keep on the host, enough not to train on one batch


def make_batches(cfg: CfgNode, batch: int, size: int, classes_per_image: int, seed: int) -> List[List[dict]]:
    """``POOL`` batches of loader-style dicts (image uint8 (3, H, W), sem_seg int64 (H, W)) on the host."""
    generator = torch.Generator().manual_seed(seed)
    head = cfg.MODEL.SEM_SEG_HEAD
    batches = []
    for _ in range(POOL):
        images = random_images(generator, batch, size)
        labels = random_label_maps(generator, batch, size, head.NUM_CLASSES, classes_per_image, head.IGNORE_VALUE)
        batches.append(
            [{"image": im, "sem_seg": lab, "height": size, "width": size} for im, lab in zip(images, labels)]
        )
    return batches


class TrainStep:
    """One variant's model, optimizer and GradScaler; ``step(i)`` trains on batch ``i % POOL`` with seed ``i``."""

    def __init__(self, cfg: CfgNode, variant: Variant, batches: List[List[dict]], seed: int) -> None:
        self.device = resolve_device(cfg).type
        self.variant = variant
        self.batches = batches
        self.seed = seed
        model = build_variant_model(cfg, variant, seed)
        model.train()
        self.optimizer = build_optimizer(cfg, model)
        self.params = [p for group in self.optimizer.param_groups for p in group["params"]]
        self.clip_gradients = build_gradient_clipper(cfg)
        self.scaler = torch.amp.GradScaler(self.device, enabled=variant.precision == "fp16")
        self.forward = torch.compile(model) if variant.compile else model
        self.losses: List[torch.Tensor] = []  # every step's total loss, on the device (read only at the end)

    @property
    def last_loss(self) -> torch.Tensor:
        return self.losses[-1] if self.losses else torch.tensor(float("nan"))

    def __call__(self, i: int) -> None:
        torch.manual_seed(self.seed * 1_000_003 + i)
        with variant_settings(self.device, self.variant):  # the backward's matmuls need the variant's TF32 too
            with autocast(self.device, self.variant):
                losses = self.forward(self.batches[i % len(self.batches)])
            total = sum(losses.values())
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(total).backward()
            self.scaler.unscale_(self.optimizer)
            self.clip_gradients(p for p in self.params if p.grad is not None)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.losses.append(total.detach())


def print_loss_curve(steps: dict, every: int) -> None:
    """Each variant's loss at steps every, 2 * every, ... (1-based, warm-up included) and its largest absolute
    difference from the first (fp32) variant's over all steps."""
    curves = {name: [float(x) for x in step.losses] for name, step in steps.items()}
    base = next(iter(curves.values()))
    rows = [[k] + [f"{curve[k - 1]:.4f}" for curve in curves.values()] for k in range(every, len(base) + 1, every)]
    rows.append(
        ["max |diff| vs " + next(iter(curves))]
        + [f"{max(abs(a - b) for a, b in zip(c, base)):.2e}" for c in curves.values()]
    )
    print(f"\nloss every {every} steps")
    print(tabulate(rows, headers=["step", *curves], tablefmt="github", disable_numparse=True))


def main(argv=None) -> None:
    parser = bench_parser(__doc__, gpu_variants="fp32,bf16,bf16+cl,fp32+compile,bf16+compile")
    parser.add_argument("--batch-size", type=positive_int, help="images per step (default: 16 cuda, 2 cpu)")
    parser.add_argument("--classes-per-image", type=positive_int, default=8, help="classes present per label map")
    parser.add_argument("--loss-every", type=positive_int, help="also print every variant's loss each K steps")
    args = parser.parse_args(argv)
    resolve_defaults(args, gpu={"batch_size": 16}, cpu={"batch_size": 2}, parser=parser)
    try:
        cfg = load_config(args.config_file, args.opts, args.device)
        check_size(cfg, args.size)
    except (ConfigError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    batches = make_batches(cfg, args.batch_size, args.size, args.classes_per_image, args.seed)
    warmup = args.warmup
    if any(v.compile for v in args.variants):
        # A compiled model recompiles for each new number of classes per image (target shapes), so it warms up on
        # the whole pool; every variant warms up as long, so all time the same steps from the same weights.
        warmup = max(args.warmup, POOL + 1)
        # Compiled random ops (the losses' point sampling) draw from inductor's own generator unless told to fall
        # back to eager's; falling back keeps the sampled points, and so the losses, comparable.
        torch._inductor.config.fallback_random = True

    steps, peaks = {}, {}
    for variant in args.variants:
        print(f"building and warming up {variant.name} ...", flush=True)
        with MemoryMeter(args.device) as memory:
            steps[variant.name] = TrainStep(cfg, variant, batches, args.seed)
            for i in range(warmup):
                steps[variant.name](i)
        peaks[variant.name] = memory.added_mib
    print(f"timing {args.iters} rounds ...", flush=True)
    seconds = time_interleaved(args.device, steps, warmup, args.iters)

    base = args.variants[0].name
    rows = []
    for name, step in steps.items():
        rows.append(
            [
                name,
                args.batch_size,
                args.size,
                f"{args.batch_size / seconds[name]:.2f}",
                f"{seconds[name] * 1000:.1f}",
                f"{peaks[name]:.0f}",
                ratio(seconds[base], seconds[name]),
                ratio(peaks[name], peaks[base]),
                f"{float(step.last_loss):.4f}",
            ]
        )
    print(
        f"\ntraining step of {cfg.MODEL.META_ARCHITECTURE} ({args.config_file}) on {describe_machine(args.device)}; "
        f"median of {args.iters} alternating rounds after {warmup} warm-up steps; "
        f"{min(args.classes_per_image, cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES)} classes per label map; peak memory is "
        "what the variant adds to the process (weights, optimizer state, activations, compile caches)"
    )
    headers = ["variant", "batch", "size", "images/s", "ms/step", memory_label(args.device)]
    headers += ["speed vs fp32", "memory vs fp32", "loss at last step"]
    print(tabulate(rows, headers=headers, tablefmt="github"))
    if args.loss_every:
        print_loss_curve(steps, args.loss_every)


if __name__ == "__main__":
    main()
