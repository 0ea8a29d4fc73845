"""What the ``ms_deform_attn`` dispatch costs over the implementation it dispatches to, before and after level_shapes.

Issue 17 measured the dispatch 15-20% slower than the bare PyTorch function on CPU and blamed the read-back of
``spatial_shapes`` / ``level_start_index`` on every call; the pixel decoder now passes the level sizes as Python ints
(``level_shapes``) and nothing is read back. This script times, side by side in alternating rounds (so a change in
the machine's load moves every row alike), forward only, no autograd:

* ``bare, tensors``: ``ms_deform_attn_pytorch`` with the official tensor arguments (it reads them back itself);
* ``bare, level_shapes``: the same function given the Python ints;
* ``dispatch, tensors`` (before): ``ms_deform_attn`` as the decoder called it until now;
* ``dispatch, level_shapes`` (after): ``ms_deform_attn`` as the decoder calls it now.

A second table times what the dispatch adds outside the sampling, per call, in microseconds (many calls per round,
so the figure is not lost in the sampling's noise): the level sizes read back from the tensors or checked as Python
ints, and the choice of path.

The metadata tensors live on ``--device``, as the decoder built them before the change, so on a GPU the "tensors"
rows include the two host syncs per call. Shapes and inputs are those of ``bench/ms_deform_attn.py``; ``--batch``
overrides the shape's batch (CPU default 1: one 512x512 image's levels, 64x64 + 32x32 + 16x16).

    python bench/ms_deform_attn_dispatch.py                                  # CPU: m2f512 at batch 1, and tiny
    python bench/ms_deform_attn_dispatch.py --device cuda --shapes m2f512 --batch 16
"""

import argparse
import dataclasses
import os
import sys
import time

import torch
from tabulate import tabulate

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import describe_machine, positive_int, ratio, time_interleaved  # noqa: E402
from ms_deform_attn import SHAPES, Shape, choice_list, make_inputs  # noqa: E402

from freemask.modeling.ops import ms_deform_attn, ms_deform_attn_pytorch  # noqa: E402
from freemask.modeling.ops import ms_deform_attn_cuda as loader  # noqa: E402
from freemask.modeling.ops.deform_attn_pytorch import level_shapes_of, level_starts  # noqa: E402

BASELINE = "bare, tensors"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if cuda else "cpu")
    parser.add_argument("--shapes", type=choice_list(SHAPES), help="default: m2f512,tiny on cpu, m2f512 on cuda")
    parser.add_argument("--batch", type=positive_int, help="images per call (default: 1 on cpu, the shape's on cuda)")
    parser.add_argument("--warmup", type=positive_int, default=2, help="untimed rounds first (default: 2)")
    parser.add_argument("--iters", type=positive_int, help="timed rounds, median taken (default: 15 cpu, 50 cuda)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not cuda:
        parser.error("--device cuda: no CUDA device is visible to torch; use --device cpu")
    args.shapes = args.shapes or (["m2f512"] if args.device == "cuda" else ["m2f512", "tiny"])
    args.iters = args.iters or (50 if args.device == "cuda" else 15)
    if args.batch is None and args.device == "cpu":
        args.batch = 1
    return args


def bench_shape(name: str, shape: Shape, args: argparse.Namespace) -> list[list[str]]:
    """One row per way of calling the op at ``shape``: median ms and the ratio to the bare function with tensors."""
    device = torch.device(args.device)
    levels = [tuple(hw) for hw in shape.levels]
    spatial = torch.tensor(levels, device=device)
    starts = torch.tensor(level_starts(levels), device=device)
    value, loc, weights, _ = make_inputs(shape, (torch.float32, torch.float32), args.device, args.seed)
    op_args = (value, spatial, starts, loc, weights)
    calls = {
        BASELINE: lambda: ms_deform_attn_pytorch(*op_args),
        "bare, level_shapes": lambda: ms_deform_attn_pytorch(*op_args, level_shapes=levels),
        "dispatch, tensors (before)": lambda: ms_deform_attn(*op_args),
        "dispatch, level_shapes (after)": lambda: ms_deform_attn(*op_args, level_shapes=levels),
    }
    with torch.no_grad():
        outputs = {what: call() for what, call in calls.items()}
        steps = {what: (lambda i, call=call: call()) for what, call in calls.items()}
        time_interleaved(args.device, steps, 0, args.warmup)
        seconds = time_interleaved(args.device, steps, args.warmup, args.iters)
    reference = outputs[BASELINE]
    return [
        [
            f"{name} (batch {shape.batch})",
            what,
            f"{seconds[what] * 1e3:.3f}",
            ratio(seconds[what], seconds[BASELINE]),
            "yes" if torch.equal(outputs[what], reference) else "NO",
        ]
        for what in calls
    ]


def overhead_rows(shape: Shape, device: str, calls: int = 2000, rounds: int = 7) -> list[list[str]]:
    """Microseconds per call of the dispatch's steps other than the sampling, median over alternating rounds."""
    levels = [tuple(hw) for hw in shape.levels]
    spatial = torch.tensor(levels, device=device)
    starts = torch.tensor(level_starts(levels), device=device)
    is_cuda, num_values = device == "cuda", shape.num_values
    steps = {
        "level sizes read back from the tensors (before)": lambda: level_shapes_of(spatial, starts, num_values),
        "level sizes checked as Python ints (after)": lambda: level_shapes_of(spatial, starts, num_values, levels),
        "choice of path (select_ms_deform_attn)": lambda: loader.select_ms_deform_attn(is_cuda),
    }
    times: dict[str, list[float]] = {what: [] for what in steps}
    for _ in range(rounds):
        for what, step in steps.items():
            begin = time.perf_counter()
            for _ in range(calls):
                step()
            times[what].append((time.perf_counter() - begin) / calls)
    return [[what, f"{sorted(t)[len(t) // 2] * 1e6:.1f}"] for what, t in times.items()]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print(f"machine: {describe_machine(args.device)}")
    rows = []
    for name in args.shapes:
        shape = SHAPES[name] if args.batch is None else dataclasses.replace(SHAPES[name], batch=args.batch)
        rows += bench_shape(name, shape, args)
    headers = ["shape", "call", "median ms", f"time / {BASELINE}", "output identical"]
    print(f"{args.iters} alternating rounds after {args.warmup} warm-up rounds, forward only, float32")
    print(tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True))
    print(f"\nper-call steps outside the sampling, {args.device} metadata tensors, levels of {args.shapes[0]}")
    overhead = overhead_rows(SHAPES[args.shapes[0]], args.device)
    print(tabulate(overhead, headers=["step", "microseconds per call"], tablefmt="github", disable_numparse=True))


if __name__ == "__main__":
    main()
