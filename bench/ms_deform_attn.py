"""Multi-scale deformable attention: the compiled op (``ops/``) against the PyTorch path, forward and forward+backward.

Shapes (queries = all value positions, as in the Mask2Former pixel decoder's encoder):

* ``m2f512``: batch 16, levels 64x64, 32x32, 16x16 (a 512x512 image at strides 8/16/32), 8 heads x 32 channels,
  4 points per level and head;
* ``m2f1024``: the same for 1024x1024 images (levels 128x128, 64x64, 32x32);
* ``tiny``: batch 2, levels 16x16, 8x8, 4x4 (the CPU default).

For each shape it prints the bytes an ideal kernel moves through device memory (every input read once, every output
written once) and the FLOPs, then one row per (dtype, implementation): median milliseconds (CUDA events, after
warm-up, inputs rotated among several sets so repeated calls do not run from L2), GB/s achieved on the ideal bytes,
the time over the floor (ideal bytes / measured copy bandwidth), the speed-up over the PyTorch path and the forward
error against the float32 PyTorch path. Implementations: ``pytorch`` (``ms_deform_attn_pytorch``) and the compiled
op's kernel versions ``v2`` and ``v3`` (``FREEMASK_MSDA_KERNEL``), side by side in one process. Dtypes: ``fp32``,
``bf16``, ``fp16`` (every tensor in that dtype) and ``mixed`` (a bf16 value, output and output gradient with float32
locations and weights: what the pixel decoder passes with ``MODEL.SEM_SEG_HEAD.DEFORMABLE_FP32 False``). On a
machine without CUDA only the PyTorch path runs (the op is CUDA-only), at the tiny shape unless told otherwise; the
figures then describe the CPU.

    python bench/ms_deform_attn.py                           # GPU: m2f512, m2f1024; fp32, bf16, mixed; all three
    python bench/ms_deform_attn.py --shapes m2f512 --dtypes mixed --impls v2,v3
"""

import argparse
import math
import os
import sys
from dataclasses import dataclass

import torch
from tabulate import tabulate

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import describe_machine, positive_int, time_interleaved  # noqa: E402

from freemask.modeling.ops import ms_deform_attn_cuda as loader  # noqa: E402
from freemask.modeling.ops import ms_deform_attn_pytorch  # noqa: E402


@dataclass(frozen=True)
class Shape:
    batch: int
    levels: tuple[tuple[int, int], ...]
    heads: int = 8
    channels: int = 32
    points: int = 4

    @property
    def num_values(self) -> int:
        return sum(h * w for h, w in self.levels)

    def samples(self) -> int:
        """Bilinear samples per call: (batch, query, head, level, point), queries = all value positions."""
        return self.batch * self.num_values * self.heads * len(self.levels) * self.points

    def bytes(self, element: int, location_element: int | None = None) -> tuple[int, int]:
        """Ideal device-memory bytes of (forward, forward + backward) with ``element``-byte values, outputs and their
        gradients and ``location_element``-byte locations, weights and their gradients (default: ``element``).

        Forward reads value, locations and weights and writes the output. Backward reads the same three plus the
        output gradient and writes the three input gradients (the float32 accumulation buffer a low-precision
        dL/dvalue needs is the implementation's cost, not part of the floor).
        """
        location_element = location_element or element
        value = self.batch * self.num_values * self.heads * self.channels  # = output elements (queries = values)
        weights = self.samples()  # locations have twice as many
        forward = 2 * value * element + 3 * weights * location_element
        backward = forward + value * element + 3 * weights * location_element  # reads + grad_output; 3 gradients
        return forward, forward + backward

    def flops(self) -> tuple[int, int]:
        """(forward, backward) floating-point operations, counting per channel and sample the 4 corner multiply-adds
        of the forward (8), and in the backward the sample, its x/y derivatives and their dot products with the output
        gradient (26) plus the 4 scaled scatters into dL/dvalue (8)."""
        per_channel = self.samples() * self.channels
        return 8 * per_channel, 34 * per_channel


SHAPES = {
    "m2f512": Shape(16, ((64, 64), (32, 32), (16, 16))),
    "m2f1024": Shape(16, ((128, 128), (64, 64), (32, 32))),
    "tiny": Shape(2, ((16, 16), (8, 8), (4, 4))),
}
# name -> (dtype of value, output and their gradients, dtype of locations, weights and theirs)
DTYPES = {
    "fp32": (torch.float32, torch.float32),
    "bf16": (torch.bfloat16, torch.bfloat16),
    "fp16": (torch.float16, torch.float16),
    "mixed": (torch.bfloat16, torch.float32),
}
IMPLS = ("pytorch", "v2", "v3")


def choice_list(choices: dict | tuple):
    def parse(text: str) -> list[str]:
        items = [s.strip() for s in text.split(",") if s.strip()]
        unknown = [s for s in items if s not in choices]
        if not items or unknown:
            raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(choices)}, separated by commas")
        return items

    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if cuda else "cpu")
    parser.add_argument("--shapes", type=choice_list(SHAPES), help="default: m2f512,m2f1024 on cuda, tiny on cpu")
    parser.add_argument("--dtypes", type=choice_list(DTYPES), default=["fp32", "bf16", "mixed"])
    parser.add_argument("--impls", type=choice_list(IMPLS), help="default: pytorch,v2,v3 on cuda, pytorch on cpu")
    parser.add_argument("--warmup", type=positive_int, help="untimed rounds first (default: 5 cuda, 1 cpu)")
    parser.add_argument("--iters", type=positive_int, help="timed rounds, median taken (default: 20 cuda, 3 cpu)")
    parser.add_argument("--sets", type=positive_int, default=2, help="input sets rotated between calls (default: 2)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    on_gpu = args.device == "cuda"
    if on_gpu and not cuda:
        parser.error("--device cuda: no CUDA device is visible to torch; use --device cpu")
    args.shapes = args.shapes or (["m2f512", "m2f1024"] if on_gpu else ["tiny"])
    args.impls = args.impls or (list(IMPLS) if on_gpu else ["pytorch"])
    args.warmup = args.warmup or (5 if on_gpu else 1)
    args.iters = args.iters or (20 if on_gpu else 3)
    compiled = [impl for impl in args.impls if impl != "pytorch"]
    if compiled:
        if not on_gpu:
            parser.error(
                f"--impls {','.join(compiled)}: the compiled op runs on CUDA tensors only; use --device cuda or "
                "--impls pytorch"
            )
        if loader.load_extension() is None:
            parser.error(f"--impls {','.join(compiled)}: {loader.unavailable_reason()}; {loader.BUILD_HINT}")
    return args


def copy_bandwidth(device: str, iters: int) -> float:
    """Bytes per second of a large device-to-device copy, counting bytes read plus bytes written."""
    numel = (1 << 28) if device == "cuda" else (1 << 25)  # 1 GiB of float32 on the GPU, 128 MiB on the CPU
    src = torch.rand(numel, device=device)
    dst = torch.empty_like(src)
    time_interleaved(device, {"copy": lambda i: dst.copy_(src)}, 0, 2)
    seconds = time_interleaved(device, {"copy": lambda i: dst.copy_(src)}, 0, iters)["copy"]
    return 2 * src.numel() * src.element_size() / seconds


def make_inputs(shape: Shape, dtypes: tuple, device: str, seed: int) -> tuple[torch.Tensor, ...]:
    """Random value, locations near a jittered grid of reference points (as trained offsets give), softmax weights.

    Locations are reference point + N(0, 2 pixels) per level, so neighbouring queries share corners the way they do
    in the model, and a few fall outside the map; the output gradient is random too (never zeros).
    """
    g = torch.Generator(device=device).manual_seed(seed)
    n, m, d, p, num_levels = shape.batch, shape.heads, shape.channels, shape.points, len(shape.levels)
    value = torch.randn(n, shape.num_values, m, d, device=device, generator=g)
    refs, sizes = [], []
    for h, w in shape.levels:
        ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
        refs.append(torch.stack([(xs.flatten() + 0.5) / w, (ys.flatten() + 0.5) / h], -1))
        sizes.append((w, h))
    ref = torch.cat(refs)[None, :, None, None, None, :]  # (1, S, 1, 1, 1, 2)
    scale = torch.tensor(sizes, device=device, dtype=torch.float32)[None, None, None, :, None, :]
    jitter = torch.randn(n, shape.num_values, m, num_levels, p, 2, device=device, generator=g) * 2 / scale
    loc = ref + jitter
    logits = torch.randn(n, shape.num_values, m, num_levels * p, device=device, generator=g)
    weights = logits.softmax(-1).view(n, shape.num_values, m, num_levels, p)
    grad_out = torch.randn(n, shape.num_values, m * d, device=device, generator=g)
    value_dtype, location_dtype = dtypes
    return value.to(value_dtype), loc.to(location_dtype), weights.to(location_dtype), grad_out.to(value_dtype)


def bench_shape(name: str, shape: Shape, args: argparse.Namespace, bandwidth: float) -> list[list[str]]:
    spatial = torch.tensor(shape.levels)  # host metadata: no device sync per call
    sizes = [h * w for h, w in shape.levels]
    starts = torch.tensor([sum(sizes[:i]) for i in range(len(sizes))])
    fns = {"pytorch": ms_deform_attn_pytorch}
    for impl in args.impls:
        if impl != "pytorch":
            fns[impl] = loader.compiled_fn(loader.load_extension(), kernel=impl)
    rows, fwd_flops, bwd_flops = [], *shape.flops()
    for dtype_name in args.dtypes:
        dtypes = DTYPES[dtype_name]
        sets = [make_inputs(shape, dtypes, args.device, args.seed + k) for k in range(args.sets)]
        leaves = [[t.detach().requires_grad_() for t in s[:3]] for s in sets]
        fwd_bytes, fwd_bwd_bytes = shape.bytes(*(torch.finfo(d).bits // 8 for d in dtypes))
        print(
            f"{name} {dtype_name}: ideal bytes forward {fwd_bytes / 1e6:.1f} MB, forward+backward "
            f"{fwd_bwd_bytes / 1e6:.1f} MB; FLOPs forward {fwd_flops / 1e9:.2f} G, backward {bwd_flops / 1e9:.2f} G; "
            f"bandwidth floor forward {fwd_bytes / bandwidth * 1e3:.4f} ms, forward+backward "
            f"{fwd_bwd_bytes / bandwidth * 1e3:.4f} ms"
        )

        def forward(fn, i):
            value, loc, weights, _ = sets[i % len(sets)]
            with torch.no_grad():
                return fn(value, spatial, starts, loc, weights)

        def forward_backward(fn, i):
            value, loc, weights = leaves[i % len(sets)]
            for t in (value, loc, weights):
                t.grad = None
            fn(value, spatial, starts, loc, weights).backward(sets[i % len(sets)][3])

        results = {}
        for phase, step in (("fwd", forward), ("fwd+bwd", forward_backward)):
            steps = {impl: (lambda i, fn=fns[impl], step=step: step(fn, i)) for impl in args.impls}
            time_interleaved(args.device, steps, 0, args.warmup)
            for impl, seconds in time_interleaved(args.device, steps, args.warmup, args.iters).items():
                results[impl, phase] = seconds
        reference = forward(ms_deform_attn_pytorch, 0) if dtype_name == "fp32" else None
        if reference is None:
            value, loc, weights, _ = sets[0]
            reference = ms_deform_attn_pytorch(value.float(), spatial, starts, loc.float(), weights.float())
        for impl in args.impls:
            fwd, fwd_bwd = results[impl, "fwd"], results[impl, "fwd+bwd"]
            error = (forward(fns[impl], 0).float() - reference).norm() / reference.norm()
            rows.append(
                [
                    name,
                    dtype_name,
                    impl,
                    f"{fwd * 1e3:.4f}",
                    f"{fwd_bytes / fwd / 1e9:.1f}",
                    f"{fwd / (fwd_bytes / bandwidth):.2f}x",
                    f"{fwd_bwd * 1e3:.4f}",
                    f"{fwd_bwd_bytes / fwd_bwd / 1e9:.1f}",
                    f"{fwd_bwd / (fwd_bwd_bytes / bandwidth):.2f}x",
                    speedup(results, impl, "fwd"),
                    speedup(results, impl, "fwd+bwd"),
                    f"{error.item():.1e}",
                ]
            )
    return rows


def speedup(results: dict, impl: str, phase: str) -> str:
    if ("pytorch", phase) not in results:
        return "n/a"
    ratio = results["pytorch", phase] / results[impl, phase]
    return f"{ratio:.2f}x" if math.isfinite(ratio) else "n/a"


HEADER = [
    "shape",
    "dtype",
    "impl",
    "fwd ms",
    "fwd GB/s",
    "fwd / floor",
    "fwd+bwd ms",
    "fwd+bwd GB/s",
    "fwd+bwd / floor",
    "speed-up fwd",
    "speed-up fwd+bwd",
    "fwd rel. error",
]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    print(f"machine: {describe_machine(args.device)}")
    if args.device == "cpu":
        print("no CUDA: timing the PyTorch path only (the compiled op is CUDA-only); use a GPU for the op's figures")
    bandwidth = copy_bandwidth(args.device, args.iters)
    print(f"measured copy bandwidth (read + write): {bandwidth / 1e9:.0f} GB/s")
    rows = []
    for name in args.shapes:
        rows += bench_shape(name, SHAPES[name], args, bandwidth)
    print(tabulate(rows, headers=HEADER, tablefmt="github", disable_numparse=True))


if __name__ == "__main__":
    main()
