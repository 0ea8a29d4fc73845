"""Choice between the compiled MSDeformAttn op and the PyTorch path (runs on CPU; no extension or GPU needed).

The extension is replaced by fakes: a module name that does not import ("not built"), a fake ``cpp_extension.load``
(the just-in-time switch) and a fake module whose forward/backward run the PyTorch path (the autograd plumbing).
"""

import logging
import subprocess
import sys
import types

import pytest
import torch

from freemask.config import ConfigError, get_cfg
from freemask.modeling import build_model
from freemask.modeling.ops import deform_attn, deform_attn_pytorch, ms_deform_attn_pytorch, set_compiled_ms_deform_attn
from freemask.modeling.ops import ms_deform_attn_cuda as loader

LOADER_LOG = "freemask.modeling.ops.ms_deform_attn_cuda"


@pytest.fixture(autouse=True)
def fresh_loader(monkeypatch):
    """Every test starts as a new process would: nothing loaded or logged, no switch set, extension 'not built'."""
    monkeypatch.delenv(loader.IMPL_ENV, raising=False)
    monkeypatch.delenv(loader.JIT_ENV, raising=False)
    monkeypatch.delenv(loader.KERNEL_ENV, raising=False)
    monkeypatch.setattr(loader, "EXTENSION", "freemask_msda_not_built")
    monkeypatch.setattr(loader, "_configured_impl", "auto")
    monkeypatch.setattr(loader, "_load_attempted", False)
    monkeypatch.setattr(loader, "_extension", None)
    monkeypatch.setattr(loader, "_unavailable_reason", "")
    monkeypatch.setattr(loader, "_logged", set())
    previous = set_compiled_ms_deform_attn(None)
    yield
    set_compiled_ms_deform_attn(previous)


def fake_compiled(*args):
    raise AssertionError("the fake compiled op must not be called in these tests")


def loader_messages(caplog):
    return [r.getMessage() for r in caplog.records if r.name == LOADER_LOG]


def test_auto_without_extension_takes_pytorch_path_and_logs_once(caplog):
    caplog.set_level(logging.INFO, logger=LOADER_LOG)
    assert loader.select_ms_deform_attn(is_cuda=True) is None
    assert loader.select_ms_deform_attn(is_cuda=True) is None
    (message,) = loader_messages(caplog)
    assert "PyTorch path for CUDA tensors" in message and "not built" in message
    assert "pip install --no-build-isolation ./ops" in message


def test_cpu_tensors_take_pytorch_path_even_with_op_installed(caplog, deform_attn_inputs):
    caplog.set_level(logging.INFO, logger=LOADER_LOG)
    set_compiled_ms_deform_attn(fake_compiled)
    value, spatial, starts, loc, weights = deform_attn_inputs()
    for _ in range(2):
        out = deform_attn.ms_deform_attn(value, spatial, starts, loc, weights)
    torch.testing.assert_close(out, ms_deform_attn_pytorch(value, spatial, starts, loc, weights))
    assert loader_messages(caplog) == ["MSDeformAttn: PyTorch path for CPU tensors (the compiled op is CUDA-only)"]


def test_auto_with_op_installed_uses_it_for_cuda_and_logs_once(caplog):
    caplog.set_level(logging.INFO, logger=LOADER_LOG)
    set_compiled_ms_deform_attn(fake_compiled)
    assert loader.select_ms_deform_attn(is_cuda=True) is fake_compiled
    assert loader.select_ms_deform_attn(is_cuda=True) is fake_compiled
    assert loader_messages(caplog) == ["MSDeformAttn: compiled CUDA op for CUDA tensors (MODEL.MSDA_IMPL=auto)"]


def test_forcing_pytorch_by_env_or_config_ignores_the_op(monkeypatch):
    set_compiled_ms_deform_attn(fake_compiled)
    monkeypatch.setenv(loader.IMPL_ENV, "pytorch")
    assert loader.select_ms_deform_attn(is_cuda=True) is None
    monkeypatch.delenv(loader.IMPL_ENV)
    loader.set_ms_deform_attn_impl("pytorch")
    assert loader.select_ms_deform_attn(is_cuda=True) is None
    monkeypatch.setenv(loader.IMPL_ENV, "auto")  # the environment wins over the config key
    assert loader.select_ms_deform_attn(is_cuda=True) is fake_compiled


def test_forcing_cuda_without_extension_names_the_fix(monkeypatch):
    monkeypatch.setenv(loader.IMPL_ENV, "cuda")
    with pytest.raises(RuntimeError, match=r"FREEMASK_MSDA_IMPL=cuda requires the compiled op.*--no-build-isolation"):
        loader.select_ms_deform_attn(is_cuda=True)
    assert loader.select_ms_deform_attn(is_cuda=False) is None  # CPU tensors have no other path


def test_bad_switch_values_are_rejected(monkeypatch):
    monkeypatch.setenv(loader.IMPL_ENV, "gpu")
    with pytest.raises(ValueError, match="FREEMASK_MSDA_IMPL='gpu': use one of auto, cuda, pytorch"):
        loader.select_ms_deform_attn(is_cuda=True)
    with pytest.raises(ConfigError, match="MODEL.MSDA_IMPL must be one of"):
        loader.set_ms_deform_attn_impl("triton")


def test_config_key_defaults_to_auto_and_build_model_applies_it(repo_root):
    cfg = get_cfg()
    assert cfg.MODEL.MSDA_IMPL == "auto"
    cfg.merge_from_file(str(repo_root / "configs" / "toy" / "semantic-segmentation" / "mask2former_R18_toy.yaml"))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.MSDA_IMPL", "pytorch"])
    build_model(cfg)
    assert loader.requested_impl() == ("pytorch", "MODEL.MSDA_IMPL=pytorch")


def test_jit_switch_is_off_by_default(monkeypatch):
    def must_not_compile(**kwargs):
        raise AssertionError("compiled without FREEMASK_MSDA_JIT")

    monkeypatch.setattr("torch.utils.cpp_extension.load", must_not_compile)
    assert not loader.jit_enabled()
    assert loader.load_extension() is None
    assert loader.load_extension() is None  # the failed import is not retried


def test_jit_switch_compiles_the_ops_sources_once(monkeypatch):
    calls = []
    built = types.ModuleType("freemask_msda")

    def fake_load(**kwargs):
        calls.append(kwargs)
        return built

    monkeypatch.setattr("torch.utils.cpp_extension.load", fake_load)
    monkeypatch.setenv(loader.JIT_ENV, "1")
    monkeypatch.setenv("CUDA_HOME", "/usr/local/cuda")  # the JIT build would set it from ops/setup.py otherwise
    assert loader.jit_enabled()
    assert loader.load_extension() is built and loader.load_extension() is built
    (call,) = calls
    assert call["name"] == "freemask_msda_not_built" and call["extra_cuda_cflags"] == ["-O3"]  # ops/setup.py's
    assert [s.rsplit("/ops/", 1)[1] for s in call["sources"]] == [
        "csrc/ms_deform_attn.cpp",
        "csrc/ms_deform_attn_cuda.cu",
        "csrc/ms_deform_attn_v3.cu",
    ]


def test_failed_jit_build_falls_back_with_the_reason(monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger=LOADER_LOG)

    def broken_compiler(**kwargs):
        raise RuntimeError("nvcc: error in ms_deform_attn_cuda.cu")

    monkeypatch.setattr("torch.utils.cpp_extension.load", broken_compiler)
    monkeypatch.setenv(loader.JIT_ENV, "yes")
    monkeypatch.setenv("CUDA_HOME", "/usr/local/cuda")
    assert loader.select_ms_deform_attn(is_cuda=True) is None
    assert "just-in-time build failed: nvcc: error" in loader_messages(caplog)[-1]


def fake_extension():
    """forward/backward with the extension's signature, computed by the PyTorch path from the host level lists."""
    ext = types.ModuleType("freemask_msda_fake")
    ext.calls = []
    ext.seen = []  # (kernel, dtypes) of every call

    def metadata(shapes, starts):
        return torch.tensor(shapes).view(-1, 2), torch.tensor(starts)

    def forward(value, loc, attn, shapes, starts, kernel):
        ext.calls.append(("forward", shapes, starts))
        ext.seen.append((kernel, value.dtype, loc.dtype, attn.dtype))
        return ms_deform_attn_pytorch(value, *metadata(shapes, starts), loc, attn)

    def backward(value, loc, attn, grad_output, shapes, starts, kernel):
        ext.calls.append(("backward", shapes, starts))
        ext.seen.append((kernel, grad_output.dtype))
        inputs = [t.detach().requires_grad_() for t in (value, loc, attn)]
        with torch.enable_grad():
            out = ms_deform_attn_pytorch(inputs[0], *metadata(shapes, starts), inputs[1], inputs[2])
        return torch.autograd.grad(out, inputs, grad_output)

    ext.forward, ext.backward = forward, backward
    return ext


def test_loaded_extension_is_installed_and_wired_to_autograd(monkeypatch, deform_attn_inputs):
    ext = fake_extension()
    monkeypatch.setitem(sys.modules, "freemask_msda_fake", ext)
    monkeypatch.setattr(loader, "EXTENSION", "freemask_msda_fake")
    compiled = loader.select_ms_deform_attn(is_cuda=True)
    assert compiled is not None and deform_attn_pytorch.compiled_ms_deform_attn() is compiled
    value, spatial, starts, loc, weights = deform_attn_inputs(dtype=torch.float64)
    leaves = [t.requires_grad_() for t in (value, loc, weights)]
    out = compiled(value, spatial, starts, loc, weights)
    grads = torch.autograd.grad(out.square().sum(), leaves)
    ref_leaves = [t.detach().clone().requires_grad_() for t in leaves]
    ref = ms_deform_attn_pytorch(ref_leaves[0], spatial, starts, ref_leaves[1], ref_leaves[2])
    torch.testing.assert_close(out, ref)
    for got, want in zip(grads, torch.autograd.grad(ref.square().sum(), ref_leaves)):
        torch.testing.assert_close(got, want)
    assert ext.calls == [("forward", [5, 7, 3, 4, 2, 2], [0, 35, 47]), ("backward", [5, 7, 3, 4, 2, 2], [0, 35, 47])]


def test_compiled_wrapper_rejects_empty_levels_before_the_kernel(monkeypatch, deform_attn_inputs):
    ext = fake_extension()
    value, _, _, loc, weights = deform_attn_inputs(shapes=[(2, 3), (1, 1)], m=2, p=1)
    with pytest.raises(ValueError, match="level 1 is empty"):
        loader.compiled_fn(ext)(value[:, :6], torch.tensor([[2, 3], [0, 4]]), torch.tensor([0, 6]), loc, weights)
    assert ext.calls == []


def test_build_without_this_gpus_architecture_names_the_fix(deform_attn_inputs):
    ext = fake_extension()

    def no_kernel_image(*args):
        raise RuntimeError("CUDA error: no kernel image is available for execution on the device")

    ext.forward = no_kernel_image
    with pytest.raises(RuntimeError, match=r"not compiled for this GPU; rebuild it with TORCH_CUDA_ARCH_LIST="):
        loader.compiled_fn(ext)(*deform_attn_inputs())


def test_one_line_python_reports_the_path(repo_root):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(repo_root), loader.IMPL_ENV: "pytorch"}
    code = "import freemask.modeling.ops.ms_deform_attn_cuda as m; print(m.describe_ms_deform_attn())"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=repo_root,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "MSDeformAttn: PyTorch path for all tensors (FREEMASK_MSDA_IMPL=pytorch)"


def test_describe_says_why_cuda_tensors_fall_back():
    line = loader.describe_ms_deform_attn()
    assert "CUDA tensors -> PyTorch path: extension freemask_msda_not_built is not built" in line
    assert line.endswith("CPU tensors -> PyTorch path")


# ---------------------------------------------------------------------------------------------- kernels and dtypes
def test_kernel_switch_defaults_to_v2_and_reaches_the_extension(monkeypatch, caplog, deform_attn_inputs):
    caplog.set_level(logging.INFO, logger=LOADER_LOG)
    inputs = deform_attn_inputs(d=4)
    ext = fake_extension()
    loader.compiled_fn(ext)(*inputs)
    monkeypatch.setenv(loader.KERNEL_ENV, " V3 ")
    loader.compiled_fn(ext)(*inputs)
    loader.compiled_fn(ext, kernel="v2")(*inputs)  # the benchmark's explicit choice
    assert [call[0] for call in ext.seen] == [2, 3, 2]
    messages = loader_messages(caplog)
    default = "MSDeformAttn: compiled kernels v2 (FREEMASK_MSDA_KERNEL unset, the default until v3 is measured)"
    assert default in messages
    assert "MSDeformAttn: compiled kernels v3 (FREEMASK_MSDA_KERNEL=v3)" in messages


def test_unknown_kernel_is_one_clear_error(monkeypatch):
    monkeypatch.setenv(loader.KERNEL_ENV, "v4")
    with pytest.raises(ConfigError, match=r"^FREEMASK_MSDA_KERNEL='v4': use one of v2, v3 or unset it$"):
        loader.compiled_fn(fake_extension())
    with pytest.raises(ConfigError, match="kernel 'v1'"):
        loader.compiled_fn(fake_extension(), kernel="v1")


@pytest.mark.parametrize("value_dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("location_dtype", [torch.bfloat16, torch.float32])
def test_wrapper_hands_the_kernels_float32_locations_and_returns_the_value_dtype(
    value_dtype, location_dtype, deform_attn_inputs
):
    """Explicit casts: the kernels read (value dtype, float32, float32); gradients come back in each input's dtype,
    also under autocast (which must not re-cast anything: the compiled function is not on its lists)."""
    ext = fake_extension()
    value, spatial, starts, loc, weights = deform_attn_inputs(d=8)
    leaves = [value.to(value_dtype).requires_grad_(), loc.to(location_dtype).requires_grad_()]
    leaves.append(weights.to(location_dtype).requires_grad_())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = loader.compiled_fn(ext)(leaves[0], spatial, starts, leaves[1], leaves[2])
    out.float().sum().backward()
    assert out.dtype == value_dtype
    assert ext.seen == [(2, value_dtype, torch.float32, torch.float32), (2, value_dtype)]
    assert [t.grad.dtype for t in leaves] == [value_dtype, location_dtype, location_dtype]


def test_float8_and_float64_locations_with_float32_value_are_refused(monkeypatch, deform_attn_inputs):
    ext = fake_extension()
    value, spatial, starts, loc, weights = deform_attn_inputs(d=4)
    fn = loader.compiled_fn(ext)
    with pytest.raises(deform_attn_pytorch.UnsupportedDtypeError, match=r"value is torch.float8_e4m3fn.*float8 is not"):
        fn(value.to(torch.float8_e4m3fn), spatial, starts, loc, weights)
    with pytest.raises(deform_attn_pytorch.UnsupportedDtypeError, match=r"attention_weights is torch.float8_e5m2"):
        fn(value, spatial, starts, loc, weights.to(torch.float8_e5m2))
    with pytest.raises(deform_attn_pytorch.UnsupportedDtypeError, match="cast value to float64 or the locations"):
        fn(value, spatial, starts, loc.double(), weights)
    # the PyTorch path too
    with pytest.raises(deform_attn_pytorch.UnsupportedDtypeError, match="float8 is not supported"):
        ms_deform_attn_pytorch(value.to(torch.float8_e4m3fn), spatial, starts, loc, weights)
    assert ext.calls == []


def test_backward_alerts_deterministic_mode(deform_attn_inputs):
    ext = fake_extension()
    value, spatial, starts, loc, weights = deform_attn_inputs(d=4)
    value.requires_grad_()
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        out = loader.compiled_fn(ext)(value, spatial, starts, loc, weights)  # the forward has no atomics
        with pytest.raises(RuntimeError, match=r"freemask_msda backward \(atomicAdd into dL/dvalue\)"):
            out.sum().backward()
    finally:
        torch.use_deterministic_algorithms(previous)
    assert [call[0] for call in ext.calls] == ["forward"]


def scalar_path_warnings(caplog):
    return [r for r in caplog.records if r.name == LOADER_LOG and "slow scalar path" in r.getMessage()]


def test_scalar_path_is_warned_once_for_an_odd_head_dim(caplog, deform_attn_inputs):
    fn = loader.compiled_fn(fake_extension())
    fn(*deform_attn_inputs(d=4))  # 4 float32 channels = 16 bytes: vectorised
    assert not scalar_path_warnings(caplog)
    fn(*deform_attn_inputs(d=6))
    fn(*deform_attn_inputs(d=6))
    (record,) = scalar_path_warnings(caplog)
    assert record.levelno == logging.WARNING
    assert "head dim 6 is not a multiple of 4 torch.float32" in record.getMessage()


def test_scalar_path_is_warned_for_a_misaligned_view(caplog, deform_attn_inputs):
    value, spatial, starts, loc, weights = deform_attn_inputs(d=8, dtype=torch.float64)
    flat = torch.empty(value.numel() + 1, dtype=value.dtype)
    shifted = flat[1:].view(value.shape).copy_(value)  # contiguous, but 8 bytes past an aligned start
    assert shifted.is_contiguous() and shifted.data_ptr() % 16 == 8
    out = loader.compiled_fn(fake_extension())(shifted, spatial, starts, loc, weights)
    torch.testing.assert_close(out, ms_deform_attn_pytorch(value, spatial, starts, loc, weights))
    (record,) = scalar_path_warnings(caplog)
    assert "value is a view whose data does not start on a 16-byte boundary" in record.getMessage()
