"""What bench/train_step.py and bench/inference.py share: arguments, config loading, variants, timing, memory, data.

Both scripts measure a model built from any config with ``freemask.modeling.build_model``; nothing here knows which
architecture it is. A *variant* is a precision (fp32, bf16 or fp16 autocast) plus optional ``compile``
(``torch.compile``) and ``cl`` (channels_last weights), written ``bf16+compile+cl``, and the settings of issue 16:
``tf32`` (TF32 matmuls and convolutions, ``SOLVER.ALLOW_TF32``), ``mixed`` (``MODEL.SEM_SEG_HEAD.DEFORMABLE_FP32
False``: the pixel decoder follows autocast and the deformable op reads a bf16 value), ``pt`` (the deformable op's
PyTorch path instead of the compiled op) and ``v3`` (the compiled op's v3 kernels). Every variant is compared with
the fp32 eager baseline measured in the same run: all variants are loaded side by side and timed in alternating
rounds, so load from other jobs on a shared machine moves them together; :func:`variant_settings` switches the
process-wide settings (TF32 flags, the deformable op's path) to each variant's for its steps.
"""

import argparse
import contextlib
import ctypes
import gc
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch import nn

from freemask.config import CfgNode, ConfigError, get_cfg
from freemask.modeling import build_model

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
MODIFIERS = {
    "compile": "compile",
    "cl": "channels_last",
    "channels_last": "channels_last",
    "tf32": "tf32",
    "mixed": "mixed",
    "pt": "pt",
    "v3": "v3",
}
BASELINE = "fp32"


@dataclass(frozen=True)
class Variant:
    """One way of running the model: autocast dtype (None = plain fp32), torch.compile, channels_last weights, TF32,
    the pixel decoder following autocast (``mixed``), and the deformable op's path (``pt``) or kernels (``v3``)."""

    precision: str
    compile: bool = False
    channels_last: bool = False
    tf32: bool = False
    mixed: bool = False
    pt: bool = False
    v3: bool = False

    @property
    def name(self) -> str:
        flags = [("compile", self.compile), ("cl", self.channels_last), ("tf32", self.tf32), ("mixed", self.mixed)]
        flags += [("pt", self.pt), ("v3", self.v3)]
        return "+".join([self.precision] + [name for name, on in flags if on])

    @property
    def autocast_dtype(self) -> Optional[torch.dtype]:
        return PRECISIONS[self.precision]


def parse_variants(text: str) -> List[Variant]:
    """``"fp32,bf16,bf16+compile+cl"`` -> variants, the fp32 eager baseline first (added when not listed)."""
    variants: List[Variant] = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        precision, *modifiers = item.split("+")
        unknown = [m for m in modifiers if m not in MODIFIERS]
        if precision not in PRECISIONS or unknown:
            raise argparse.ArgumentTypeError(
                f"variant {item!r}: write a precision ({', '.join(PRECISIONS)}) followed by optional "
                f"'+compile', '+cl' (channels_last), '+tf32', '+mixed', '+pt' or '+v3', e.g. bf16+compile"
            )
        flags = {MODIFIERS[m] for m in modifiers}
        if {"pt", "v3"} <= flags:
            raise argparse.ArgumentTypeError(
                f"variant {item!r}: '+pt' (the PyTorch path) and '+v3' (the compiled op's kernels) exclude each other"
            )
        variant = Variant(
            precision,
            "compile" in flags,
            "channels_last" in flags,
            **{name: name in flags for name in ("tf32", "mixed", "pt", "v3")},
        )
        if variant not in variants:
            variants.append(variant)
    baseline = Variant(BASELINE)
    return [baseline] + [v for v in variants if v != baseline]


def int_list(text: str) -> List[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got {text!r}")
    return values


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def bench_parser(description: str, gpu_variants: str) -> argparse.ArgumentParser:
    """The flags both scripts take; each script adds --batch-size with its own defaults."""
    parser = argparse.ArgumentParser(
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Trailing KEY VALUE pairs override the config, e.g. MODEL.SEM_SEG_HEAD.NUM_CLASSES 150",
    )
    parser.add_argument("--config-file", required=True, metavar="FILE", help="path to a YAML config")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=positive_int, help="square input size in pixels (default: 512 cuda, 128 cpu)")
    parser.add_argument("--warmup", type=positive_int, help="untimed iterations first (default: 5 cuda, 1 cpu)")
    parser.add_argument("--iters", type=positive_int, help="timed iterations, median taken (default: 20 cuda, 3 cpu)")
    parser.add_argument(
        "--variants",
        help=f"comma-separated precision[+compile][+cl] (default: {gpu_variants!r} on cuda, 'fp32,bf16' on cpu); "
        "the fp32 eager baseline is always measured",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the random data")
    parser.add_argument("opts", default=[], nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    parser.set_defaults(gpu_variants=gpu_variants)
    return parser


def resolve_defaults(args: argparse.Namespace, gpu: dict, cpu: dict, parser: argparse.ArgumentParser) -> None:
    """Fill the flags left unset with the device's defaults (GPU-sized on cuda, seconds-long on cpu)."""
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible to torch; use --device cpu")
    if args.device == "cuda":
        defaults = {"size": 512, "warmup": 5, "iters": 20, **gpu}
    else:
        defaults = {"size": 128, "warmup": 1, "iters": 3, **cpu}
    for key, value in defaults.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    try:
        args.variants = parse_variants(args.variants or (args.gpu_variants if args.device == "cuda" else "fp32,bf16"))
    except argparse.ArgumentTypeError as e:
        parser.error(str(e))


def load_config(config_file: str, opts: Sequence[str], device: str) -> CfgNode:
    """The config with MODEL.DEVICE set and no weights loaded: speed does not depend on the weights' values, and the
    benchmark must run where the pre-trained files are not (MODEL.BACKBONE.PRETRAINED, MODEL.WEIGHTS emptied)."""
    cfg = get_cfg()
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    emptied = []
    if cfg.MODEL.BACKBONE.PRETRAINED:
        emptied.append("MODEL.BACKBONE.PRETRAINED")
    if cfg.MODEL.WEIGHTS:
        emptied.append("MODEL.WEIGHTS")
    cfg.MODEL.BACKBONE.PRETRAINED = ""
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.DEVICE = device
    cfg.freeze()
    note = f" (overriding {', '.join(emptied)})" if emptied else ""
    print(f"weights: random initialisation, MODEL.BACKBONE.PRETRAINED and MODEL.WEIGHTS set to ''{note}")
    return cfg


def check_size(cfg: CfgNode, size: int) -> None:
    d = cfg.INPUT.SIZE_DIVISIBILITY
    if d > 1 and size % d:
        raise ConfigError(
            f"--size {size} is not a multiple of INPUT.SIZE_DIVISIBILITY ({d}); use e.g. {-(-size // d) * d}"
        )


def build_variant_model(cfg: CfgNode, variant: Variant, seed: int) -> nn.Module:
    """The model with the same initial weights for every variant (seeded), in channels_last when asked, its pixel
    decoder following autocast for ``mixed``."""
    if variant.mixed:
        cfg = cfg.clone()
        cfg.defrost()
        cfg.MODEL.SEM_SEG_HEAD.DEFORMABLE_FP32 = False
        cfg.freeze()
    torch.manual_seed(seed)
    model = build_model(cfg)
    if variant.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


@contextlib.contextmanager
def variant_settings(device: str, variant: Variant):
    """The process-wide settings of ``variant`` for the steps inside: TF32 flags (cuda) and the deformable op's path
    (``pt``) or kernel version (``v3``; v2 otherwise), all restored on exit. The op's choice is per call
    (``MODEL.MSDA_IMPL``); ``FREEMASK_MSDA_IMPL``, when set in the environment, still overrides ``pt``."""
    from freemask.modeling.ops import deform_attn_pytorch
    from freemask.modeling.ops import ms_deform_attn_cuda as loader

    saved_tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    saved_impl, saved_fn = loader.requested_impl()[0], deform_attn_pytorch.compiled_ms_deform_attn()
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = variant.tf32
    if variant.pt:
        loader.set_ms_deform_attn_impl("pytorch")
    elif device == "cuda" and loader.load_extension() is not None:
        deform_attn_pytorch.set_compiled_ms_deform_attn(
            loader.compiled_fn(loader.load_extension(), kernel="v3" if variant.v3 else "v2")
        )
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved_tf32
        loader.set_ms_deform_attn_impl(saved_impl)
        deform_attn_pytorch.set_compiled_ms_deform_attn(saved_fn)


@contextlib.contextmanager
def autocast(device: str, variant: Variant):
    """Autocast to the variant's precision, with its :func:`variant_settings`."""
    dtype = variant.autocast_dtype
    enabled = dtype is not None
    with variant_settings(device, variant), torch.autocast(device, dtype=dtype or torch.float32, enabled=enabled):
        yield


def time_interleaved(
    device: str, steps: Dict[str, Callable[[int], object]], start: int, iters: int
) -> Dict[str, float]:
    """Median seconds per call of every ``step(i)``, ``i`` from ``start`` to ``start + iters - 1``.

    Round ``i`` calls every step once, in turn, so a change in the machine's load slows all variants alike and the
    ratios between them hold. On cuda each call is bracketed by CUDA events and the host synchronises once, after the
    last round: the timing adds no host sync of its own.
    """
    cuda = device == "cuda"
    marks: Dict[str, list] = {name: [] for name in steps}
    if cuda:
        torch.cuda.synchronize()
    for i in range(start, start + iters):
        for name, step in steps.items():
            if cuda:
                begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                begin.record()
                step(i)
                end.record()
                marks[name].append((begin, end))
            else:
                begin = time.perf_counter()
                step(i)
                marks[name].append(time.perf_counter() - begin)
    if cuda:
        torch.cuda.synchronize()
        return {name: statistics.median(b.elapsed_time(e) / 1000 for b, e in pairs) for name, pairs in marks.items()}
    return {name: statistics.median(seconds) for name, seconds in marks.items()}


def release_memory(device: str) -> None:
    """Collect garbage and give freed memory back (CUDA cache, glibc arenas), so a measurement starts from a floor
    that does not depend on what ran before."""
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    elif sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:
            pass


def _proc_status_mib(field: str) -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


class MemoryMeter:
    """Peak memory the work inside ``with`` adds on top of what the process held when it began, in MiB.

    cuda: the caching allocator's ``max_memory_allocated`` minus ``memory_allocated`` before. cpu (Linux): the
    resident high-water mark (VmHWM, reset through ``/proc/self/clear_refs``) minus the resident size (VmRSS) before;
    NaN where /proc is missing. Counting only what is added lets the variants stay loaded side by side (for
    interleaved timing) while each is charged its own weights, optimizer state, activations and compile caches.
    """

    def __init__(self, device: str) -> None:
        self.device = device
        self.added_mib = math.nan

    def __enter__(self) -> "MemoryMeter":
        release_memory(self.device)
        if self.device == "cuda":
            self.before = torch.cuda.memory_allocated() / 2**20
            torch.cuda.reset_peak_memory_stats()
        else:
            self.before = _proc_status_mib("VmRSS")
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
            except OSError:
                self.before = math.nan
        return self

    def __exit__(self, *exc) -> None:
        if self.device == "cuda":
            peak = torch.cuda.max_memory_allocated() / 2**20
        else:
            peak = _proc_status_mib("VmHWM")
        self.added_mib = peak - self.before


def memory_label(device: str) -> str:
    return "peak MiB (CUDA allocated)" if device == "cuda" else "peak MiB (RSS)"


def random_images(generator: torch.Generator, batch: int, size: int) -> torch.Tensor:
    """uint8 images ``(N, 3, size, size)``, as the data loader delivers them."""
    return torch.randint(0, 256, (batch, 3, size, size), generator=generator, dtype=torch.uint8)


def random_label_maps(
    generator: torch.Generator, batch: int, size: int, num_classes: int, classes_per_image: int, ignore_label: int
) -> torch.Tensor:
    """int64 label maps ``(N, size, size)``: blocks of ``classes_per_image`` classes drawn per image, one block in
    eight ignored. Blocky rather than per-pixel noise so that each present class is one sizeable region, as in real
    masks (the matcher's and the mask losses' cost depends on the number of classes present)."""
    cells = 8
    k = min(classes_per_image, num_classes)
    maps = []
    for _ in range(batch):
        classes = torch.randperm(num_classes, generator=generator)[:k]
        grid = classes[torch.randint(0, k, (cells, cells), generator=generator)]
        grid[torch.rand((cells, cells), generator=generator) < 1 / 8] = ignore_label
        block = -(-size // cells)
        maps.append(grid.repeat_interleave(block, 0).repeat_interleave(block, 1)[:size, :size])
    return torch.stack(maps)


def describe_machine(device: str) -> str:
    if device == "cuda":
        return f"{torch.cuda.get_device_name()} (torch {torch.__version__}, CUDA {torch.version.cuda})"
    load = f", 1-minute load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    return f"CPU, {torch.get_num_threads()} threads (torch {torch.__version__}{load})"


def ratio(value: float, baseline: float) -> str:
    return f"{value / baseline:.2f}x" if baseline > 0 and math.isfinite(value / baseline) else "n/a"
