#!/usr/bin/env python
"""Inference throughput and peak memory of any config's model: eval-mode whole-image prediction.

    python bench/inference.py --config-file configs/toy/semantic-segmentation/mask2former_R18_toy.yaml \
        --device cpu --size 128
    python bench/inference.py \
        --config-file configs/ade20k/semantic-segmentation/mask2former/maskformer2_swin_tiny_bs16_160k.yaml
    (cuda defaults: batches 1 and 16, 512x512, variants fp32,bf16,bf16+cl,fp32+compile,bf16+compile; fp16 on request)

Why: evaluation, the FreeMask filtering pass and demos run this forward; the precision, torch.compile and memory
format are chosen on measured images/s. What is timed is the model's ``predict`` (class scores (N, K, H, W) of a
normalised batch, under ``torch.inference_mode``) on images of the crop size — whole-image inference, where the
project's inference helper adds nothing (no padding at a size divisible by INPUT.SIZE_DIVISIBILITY, no resize). The
test-time loop itself gives ``predict`` one image at a time; batch 16 is the throughput a batched filter or a
sliding-window pass (TEST.SLIDING_WINDOW, windows in batches) can reach.

Every variant starts from the same weights and gets the same random images; the last column is the largest absolute
difference from the fp32 eager class scores, over 4096 fixed random pixels of every image and class (with random
weights the predicted class is the same almost everywhere, so comparing argmax maps would tell nothing). All variants
are built first; per batch size each is warmed up (peak memory measured then, per variant: its weights plus what
the call adds), then all are timed in alternating rounds of one call each.
"""

import os
import sys
from typing import Callable

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
    int_list,
    load_config,
    memory_label,
    random_images,
    ratio,
    resolve_defaults,
    time_interleaved,
)

from freemask.config import CfgNode, ConfigError  # noqa: E402

SAMPLED_PIXELS = 4096


def normalised_images(cfg: CfgNode, batch: int, size: int, seed: int) -> torch.Tensor:
    """``(batch, 3, size, size)`` float images normalised with the config's pixel mean and std, on the host."""
    images = random_images(torch.Generator().manual_seed(seed), batch, size).float()
    mean = torch.tensor(cfg.MODEL.PIXEL_MEAN).view(1, -1, 1, 1)
    std = torch.tensor(cfg.MODEL.PIXEL_STD).view(1, -1, 1, 1)
    return (images - mean) / std


class PredictStep:
    """One variant's eval-mode ``predict`` on one fixed batch, kept on the device (channels_last when asked)."""

    def __init__(self, predict: Callable, images: torch.Tensor, variant: Variant, device: str) -> None:
        self.predict = predict
        self.variant = variant
        self.device = device
        self.inputs = images.to(device)
        if variant.channels_last:
            self.inputs = self.inputs.contiguous(memory_format=torch.channels_last)

    def __call__(self, i: int = 0) -> torch.Tensor:
        with torch.inference_mode(), autocast(self.device, self.variant):
            return self.predict(self.inputs)


def score_sample(scores: torch.Tensor, seed: int) -> torch.Tensor:
    """Float32 scores ``(N, K, SAMPLED_PIXELS)`` at fixed random pixels, on the host: enough to compare variants
    without keeping full score maps (16 x 150 x 512 x 512 floats are 2.5 GB)."""
    flat = scores.flatten(2)
    generator = torch.Generator().manual_seed(seed)
    index = torch.randperm(flat.shape[-1], generator=generator)[:SAMPLED_PIXELS].to(flat.device)
    return flat[..., index].float().cpu()


def main(argv=None) -> None:
    parser = bench_parser(__doc__, gpu_variants="fp32,bf16,bf16+cl,fp32+compile,bf16+compile")
    parser.add_argument(
        "--batch-size", type=int_list, help="batch sizes, comma-separated (default: 1,16 cuda; 1,2 cpu)"
    )
    args = parser.parse_args(argv)
    resolve_defaults(args, gpu={"batch_size": [1, 16]}, cpu={"batch_size": [1, 2]}, parser=parser)
    try:
        cfg = load_config(args.config_file, args.opts, args.device)
        check_size(cfg, args.size)
    except (ConfigError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    images = normalised_images(cfg, max(args.batch_size), args.size, args.seed)

    predictors, weights = {}, {}
    for variant in args.variants:
        with MemoryMeter(args.device) as memory:
            model = build_variant_model(cfg, variant, args.seed)
            model.eval()
            predictors[variant.name] = (torch.compile(model.predict) if variant.compile else model.predict, variant)
        weights[variant.name] = memory.added_mib
    base = args.variants[0].name

    rows = []
    for batch in args.batch_size:
        steps, peaks = {}, {}
        for name, (predict, variant) in predictors.items():
            print(f"warming up {name} at batch {batch} ...", flush=True)
            with MemoryMeter(args.device) as memory:
                steps[name] = PredictStep(predict, images[:batch], variant, args.device)
                for i in range(args.warmup):
                    steps[name](i)
            peaks[name] = weights[name] + memory.added_mib
        print(f"timing {args.iters} rounds at batch {batch} ...", flush=True)
        seconds = time_interleaved(args.device, steps, args.warmup, args.iters)
        samples = {name: score_sample(step(), args.seed) for name, step in steps.items()}
        for name in steps:
            rows.append(
                [
                    name,
                    batch,
                    args.size,
                    f"{batch / seconds[name]:.2f}",
                    f"{seconds[name] * 1000:.1f}",
                    f"{peaks[name]:.0f}",
                    ratio(seconds[base], seconds[name]),
                    ratio(peaks[name], peaks[base]),
                    f"{(samples[name] - samples[base]).abs().max().item():.2g}",
                ]
            )
        del steps
    print(
        f"\neval-mode predict of {cfg.MODEL.META_ARCHITECTURE} ({args.config_file}) "
        f"on {describe_machine(args.device)}; "
        f"median of {args.iters} alternating rounds after {args.warmup} warm-up calls; peak memory is the variant's "
        "weights plus what one call adds (input, activations, scores, compile caches)"
    )
    headers = ["variant", "batch", "size", "images/s", "ms/batch", memory_label(args.device)]
    headers += ["speed vs fp32", "memory vs fp32", "max abs score diff vs fp32"]
    print(tabulate(rows, headers=headers, tablefmt="github"))


if __name__ == "__main__":
    main()
