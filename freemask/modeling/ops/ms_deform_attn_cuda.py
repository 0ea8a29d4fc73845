"""The compiled multi-scale deformable attention op (``ops/``, module ``freemask_msda``): loading it and choosing it.

:func:`~freemask.modeling.ops.ms_deform_attn` asks :func:`select_ms_deform_attn` on every call which path serves it:

* CPU tensors always take the PyTorch path: the op is CUDA-only.
* The requested implementation is the environment variable ``FREEMASK_MSDA_IMPL`` when set, else ``MODEL.MSDA_IMPL``
  (applied by ``build_model`` through :func:`set_ms_deform_attn_impl`), else ``auto``. ``auto`` uses the op for CUDA
  tensors when it imports and falls back to PyTorch otherwise; ``cuda`` makes a missing op an error (so a cluster
  job cannot silently run on the slow path); ``pytorch`` never loads it (to compare, or to rule the op out).
* ``FREEMASK_MSDA_KERNEL`` = ``v2`` (default: the kernels measured first) | ``v3`` (one lane per sample does the
  bilinear setup and shares it by shuffles, 32-bit offsets, P=4 specialised; see ``ops/README.md``), read once when
  the extension is installed; v2 stays the default until ``bench/gpu_check.sh`` has measured both.
* The extension is looked for once, on the first call with CUDA tensors, never at import. With
  ``FREEMASK_MSDA_JIT=1`` a missing extension is compiled from ``ops/csrc`` on that first call
  (``torch.utils.cpp_extension.load``, minutes, cached under ``TORCH_EXTENSIONS_DIR``); off by default, as a
  compiler run should not start unasked in the middle of training.

Each path is logged once with its reason; :func:`describe_ms_deform_attn` says which path each device will take.

Dtypes: the kernels read a float32/float16/bfloat16 value with float32 locations and weights (float64 with float64),
so the wrapper casts locations and weights to that dtype explicitly (autograd casts their gradients back); outputs are
in the value's dtype. An input that forces the kernels' scalar path (head dim not a multiple of 16 bytes, a
misaligned view) is logged once as a warning; the backward's atomics make it non-deterministic, which
``torch.use_deterministic_algorithms(True)`` turns into an error.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import warnings
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor, autograd
from torch.autograd.function import FunctionCtx, once_differentiable

from ...config import ConfigError
from .deform_attn_pytorch import (
    LevelShapes,
    MSDeformAttnFn,
    UnsupportedDtypeError,
    compiled_ms_deform_attn,
    level_shapes_of,
    level_starts,
    sampling_dtype,
    set_compiled_ms_deform_attn,
)

IMPL_ENV = "FREEMASK_MSDA_IMPL"
JIT_ENV = "FREEMASK_MSDA_JIT"
KERNEL_ENV = "FREEMASK_MSDA_KERNEL"
IMPLS = ("auto", "cuda", "pytorch")
KERNELS = {"v2": 2, "v3": 3}  # name -> the number the extension's forward/backward take
DEFAULT_KERNEL = "v2"
VECTOR_BYTES = 16  # the kernels move 16 bytes of channels per thread when the head dim and the pointers allow it
EXTENSION = "freemask_msda"
OPS_DIR = Path(__file__).resolve().parents[3] / "ops"
BUILD_HINT = (
    "build it with `pip install --no-build-isolation ./ops` (see ops/README.md) or set FREEMASK_MSDA_JIT=1 to "
    "compile it on first use"
)

logger = logging.getLogger(__name__)

_configured_impl = "auto"
_load_attempted = False
_extension: ModuleType | None = None
_unavailable_reason = ""  # why the extension could not be loaded; "" until a load failed
_logged: set[str] = set()


def set_ms_deform_attn_impl(impl: str) -> None:
    """Record ``MODEL.MSDA_IMPL`` (``auto``, ``cuda`` or ``pytorch``); ``FREEMASK_MSDA_IMPL`` still overrides it."""
    global _configured_impl
    if impl not in IMPLS:
        raise ConfigError(f"MODEL.MSDA_IMPL must be one of {', '.join(IMPLS)}, got {impl!r}")
    _configured_impl = impl


def requested_impl() -> tuple[str, str]:
    """``(implementation, where it was set)``: the environment variable wins over the config key."""
    from_env = os.environ.get(IMPL_ENV, "").strip().lower()
    if from_env:
        if from_env not in IMPLS:
            raise ValueError(f"{IMPL_ENV}={os.environ[IMPL_ENV]!r}: use one of {', '.join(IMPLS)} or unset it")
        return from_env, f"{IMPL_ENV}={from_env}"
    return _configured_impl, f"MODEL.MSDA_IMPL={_configured_impl}"


def requested_kernel() -> tuple[str, str]:
    """``(kernel, where it was set)`` from ``FREEMASK_MSDA_KERNEL`` (``v2`` when unset); a bad value is an error."""
    from_env = os.environ.get(KERNEL_ENV, "").strip().lower()
    if not from_env:
        return DEFAULT_KERNEL, f"{KERNEL_ENV} unset, the default until v3 is measured"
    if from_env not in KERNELS:
        raise ConfigError(f"{KERNEL_ENV}={os.environ[KERNEL_ENV]!r}: use one of {', '.join(KERNELS)} or unset it")
    return from_env, f"{KERNEL_ENV}={from_env}"


def jit_enabled() -> bool:
    """True when ``FREEMASK_MSDA_JIT`` is 1/true/yes/on; off by default."""
    return os.environ.get(JIT_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _build_just_in_time() -> ModuleType:
    """Compile ``ops/csrc`` with the sources, flags and CUDA toolkit ``ops/setup.py`` names (imported, not run)."""
    script_path = OPS_DIR / "setup.py"
    if not script_path.is_file():
        raise ImportError(f"{JIT_ENV} is set but {script_path} is missing; use a checkout of the repository")
    spec = importlib.util.spec_from_file_location("freemask_msda_setup", script_path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    home = script.cuda_home()
    if home and not os.environ.get("CUDA_HOME"):
        os.environ["CUDA_HOME"] = home  # read when torch.utils.cpp_extension is first imported, just below
    from torch.utils.cpp_extension import load

    logger.info("MSDeformAttn: compiling %s from %s (%s=1); this takes a few minutes", EXTENSION, OPS_DIR, JIT_ENV)
    sources = [str(OPS_DIR / s) for s in script.SOURCES]
    return load(name=EXTENSION, sources=sources, extra_cflags=["-O3"], extra_cuda_cflags=script.NVCC_FLAGS)


def load_extension() -> ModuleType | None:
    """Import ``freemask_msda`` (or compile it when the JIT switch is on); None, with the reason kept, if neither works.

    Tried once per process: a failed import is not retried on every call.
    """
    global _load_attempted, _extension, _unavailable_reason
    if _load_attempted:
        return _extension
    _load_attempted = True
    try:
        _extension = importlib.import_module(EXTENSION)
        return _extension
    except ImportError as e:
        _unavailable_reason = f"extension {EXTENSION} is not built ({e})"
    if jit_enabled():
        try:
            _extension = _build_just_in_time()
        except Exception as e:  # a compiler or linker failure must not stop training in auto mode
            _unavailable_reason = f"the just-in-time build failed: {e}"
    return _extension


def unavailable_reason() -> str:
    """Why :func:`load_extension` returned None ("" before the first attempt or after a successful one)."""
    return "" if _extension is not None else _unavailable_reason


class _MSDeformAttnFunction(autograd.Function):
    """Autograd wrapper: the kernels recompute the bilinear samples in backward, so only the inputs are saved.

    Inputs arrive in the kernels' dtypes (:func:`kernel_inputs`); ``custom_fwd``/``custom_bwd`` run the backward
    under the forward's autocast state, and nothing inside is cast by autocast (the extension's ops are not on its
    lists), so the dtypes are the ones chosen explicitly by the wrapper.
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda")
    def forward(
        ctx: FunctionCtx,
        ext: ModuleType,
        kernel: int,
        value: Tensor,
        sampling_locations: Tensor,
        attention_weights: Tensor,
        shapes: list[int],
        starts: list[int],
    ) -> Tensor:
        ctx.ext, ctx.kernel, ctx.shapes, ctx.starts = ext, kernel, shapes, starts
        ctx.save_for_backward(value, sampling_locations, attention_weights)
        return ext.forward(value, sampling_locations, attention_weights, shapes, starts, kernel)

    @staticmethod
    @once_differentiable
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx: FunctionCtx, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        alert_not_deterministic("freemask_msda backward (atomicAdd into dL/dvalue)")
        value, sampling_locations, attention_weights = ctx.saved_tensors
        _warn_if_scalar_path(grad_output, "grad_output")
        grads = ctx.ext.backward(
            value, sampling_locations, attention_weights, grad_output, ctx.shapes, ctx.starts, ctx.kernel
        )
        return (None, None, *grads, None, None)


def alert_not_deterministic(caller: str) -> None:
    """What ATen's ``alertNotDeterministic`` does (it has no Python binding): under
    ``torch.use_deterministic_algorithms(True)`` raise, or warn with ``warn_only=True``. The backward sums
    dL/dvalue with float atomics whose order varies between runs, so its result is not bit-reproducible."""
    if not torch.are_deterministic_algorithms_enabled():
        return
    message = (
        f"{caller} does not have a deterministic implementation, but you set "
        "'torch.use_deterministic_algorithms(True)'; allow it with torch.use_deterministic_algorithms(True, "
        "warn_only=True) (on CUDA the PyTorch path's grid_sample backward uses atomics too)"
    )
    if torch.is_deterministic_algorithms_warn_only_enabled():
        warnings.warn(message, stacklevel=3)
    else:
        raise RuntimeError(message)


def kernel_inputs(value: Tensor, sampling_locations: Tensor, attention_weights: Tensor) -> tuple[Tensor, Tensor]:
    """Locations and weights cast to the dtype the kernels read with ``value``: float64 for a float64 value, float32
    otherwise (the mixed-precision case for bfloat16/float16, and the same arithmetic the kernels always did: they
    compute in float32 for every non-double dtype). float8 and integer inputs are refused with the cast to make."""
    sampling_dtype(value, sampling_locations, attention_weights)
    location_dtype = torch.float64 if value.dtype == torch.float64 else torch.float32
    for name, t in (("sampling_locations", sampling_locations), ("attention_weights", attention_weights)):
        if t.dtype == torch.float64 and location_dtype != torch.float64:
            raise UnsupportedDtypeError(
                f"MSDeformAttn: {name} is float64 but value is {value.dtype}; the op computes in float32 for it: cast "
                "value to float64 or the locations and weights to float32"
            )
    return sampling_locations.to(location_dtype), attention_weights.to(location_dtype)


def _warn_if_scalar_path(t: Tensor, name: str) -> None:
    """Log once when ``t`` makes the kernels fall back to one channel per thread (several times slower)."""
    vector = VECTOR_BYTES // t.element_size()
    channels = t.shape[-1] if name == "value" else None
    if channels is not None and channels % vector:
        why = f"the head dim {channels} is not a multiple of {vector} {t.dtype} channels (16 bytes)"
    elif t.is_contiguous() and t.data_ptr() % VECTOR_BYTES:
        why = f"{name} is a view whose data does not start on a 16-byte boundary"
    else:
        return
    if "scalar-path" not in _logged:
        _logged.add("scalar-path")
        logger.warning(
            "MSDeformAttn: the compiled op takes its slow scalar path because %s; use a head dim that is a multiple "
            "of %d and contiguous, aligned tensors (e.g. .clone()) for the vectorised kernels",
            why,
            vector,
        )


def compiled_fn(ext: ModuleType, kernel: str | None = None) -> MSDeformAttnFn:
    """The extension as an :data:`MSDeformAttnFn` with the PyTorch path's signature, autograd and checks.

    Level sizes reach the kernels as launch parameters, so an empty level or a wrong offset fails here. They come
    from ``level_shapes`` (Python ints, no sync) when given, else from the tensors (one small copy each when they
    are on the GPU; pass them on the CPU to avoid that sync).
    """

    # kernel (v2/v3): FREEMASK_MSDA_KERNEL, read here once, unless given (the benchmark compares both in one process).
    if kernel is None:
        kernel, source = requested_kernel()
        _log_once(f"kernel-{kernel}", f"MSDeformAttn: compiled kernels {kernel} ({source})")
    if kernel not in KERNELS:
        raise ConfigError(f"MSDeformAttn kernel {kernel!r}: use one of {', '.join(KERNELS)}")
    kernel_number = KERNELS[kernel]

    def ms_deform_attn_cuda(
        value: Tensor,
        spatial_shapes: Tensor,
        level_start_index: Tensor,
        sampling_locations: Tensor,
        attention_weights: Tensor,
        *,
        level_shapes: LevelShapes | None = None,
    ) -> Tensor:
        shapes = level_shapes_of(spatial_shapes, level_start_index, value.shape[1], level_shapes)
        flat = [size for hw in shapes for size in hw]
        starts = level_starts(shapes)
        try:
            loc, weights = kernel_inputs(value, sampling_locations, attention_weights)
            _warn_if_scalar_path(value, "value")
            return _MSDeformAttnFunction.apply(ext, kernel_number, value, loc, weights, flat, starts)
        except RuntimeError as e:
            if "no kernel image" not in str(e):
                raise
            raise RuntimeError(_wrong_architecture_message(value)) from e

    return ms_deform_attn_cuda


def _wrong_architecture_message(value: Tensor) -> str:
    """The import succeeds on any GPU; only the first launch shows the build lacks this GPU's architecture."""
    arch = "this GPU's compute capability"
    if value.is_cuda:
        arch = "{}.{}".format(*torch.cuda.get_device_capability(value.device))
    return (
        f'MSDeformAttn: {EXTENSION} was not compiled for this GPU; rebuild it with TORCH_CUDA_ARCH_LIST="{arch}" '
        f"pip install --no-build-isolation ./ops, or set {IMPL_ENV}=pytorch"
    )


def _log_once(key: str, message: str) -> None:
    if key not in _logged:
        _logged.add(key)
        logger.info(message)


def select_ms_deform_attn(is_cuda: bool) -> MSDeformAttnFn | None:
    """The compiled implementation to use for tensors on CUDA (``is_cuda``) or the CPU; None means the PyTorch path.

    Raises RuntimeError when the compiled op is forced (``cuda``) for CUDA tensors but cannot be loaded.
    """
    impl, source = requested_impl()
    if impl == "pytorch":
        _log_once("pytorch-forced", f"MSDeformAttn: PyTorch path ({source})")
        return None
    if not is_cuda:
        _log_once("pytorch-cpu", "MSDeformAttn: PyTorch path for CPU tensors (the compiled op is CUDA-only)")
        return None
    fn = compiled_ms_deform_attn()
    if fn is None:
        ext = load_extension()
        if ext is not None:
            fn = compiled_fn(ext)
            set_compiled_ms_deform_attn(fn)
    if fn is None:
        if impl == "cuda":
            raise RuntimeError(
                f"MSDeformAttn: {source} requires the compiled op, but {_unavailable_reason}; {BUILD_HINT}, or set "
                f"{IMPL_ENV}=auto to fall back to PyTorch"
            )
        _log_once(
            "pytorch-missing", f"MSDeformAttn: PyTorch path for CUDA tensors, {_unavailable_reason}; {BUILD_HINT}"
        )
        return None
    _log_once("cuda", f"MSDeformAttn: compiled CUDA op for CUDA tensors ({source})")
    return fn


def describe_ms_deform_attn() -> str:
    """One line saying which path CPU and CUDA tensors will take, and why (looks for the extension if needed)."""
    impl, source = requested_impl()
    if impl == "pytorch":
        return f"MSDeformAttn: PyTorch path for all tensors ({source})"
    ext = load_extension() if compiled_ms_deform_attn() is None else None
    if compiled_ms_deform_attn() is not None or ext is not None:
        where = getattr(ext, "__file__", "installed with set_compiled_ms_deform_attn")
        cuda = f"compiled op ({where})"
    else:
        cuda = f"{'error' if impl == 'cuda' else 'PyTorch path'}: {_unavailable_reason}; {BUILD_HINT}"
    return f"MSDeformAttn ({source}): CUDA tensors -> {cuda}; CPU tensors -> PyTorch path"
