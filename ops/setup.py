"""Build the multi-scale deformable attention CUDA op as the top-level module ``freemask_msda``.

    pip install --no-build-isolation ./ops          # or -e ./ops; TORCH_CUDA_ARCH_LIST="9.0" to pick the GPUs

The extension links against the torch already installed. ``--no-build-isolation`` builds in the current environment;
a plain ``pip install ./ops`` also works (see ``_import_installed_torch``). No GPU is needed to build, only nvcc.
"""

import os
import shutil
import subprocess
import sys

OPS_DIR = os.path.dirname(os.path.abspath(__file__))
SOURCES = ["csrc/ms_deform_attn.cpp", "csrc/ms_deform_attn_cuda.cu", "csrc/ms_deform_attn_v3.cu"]
# Also read by the just-in-time build (freemask/modeling/ops/ms_deform_attn_cuda.py), which imports this file.
NVCC_FLAGS = ["-O3"]
DEFAULT_ARCHS_WITHOUT_GPU = "8.0;9.0"


def cuda_home() -> str | None:
    """The CUDA toolkit root, set before torch looks for it: torch takes the folder above ``which nvcc``, which is
    wrong when nvcc is a wrapper script outside the toolkit (e.g. /usr/local/bin/nvcc -> libcudart searched in
    /usr/local/lib)."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            return os.environ[var]
    nvcc = shutil.which("nvcc")
    candidates = [os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))] if nvcc else []
    for root in candidates + ["/usr/local/cuda"]:
        if os.path.exists(os.path.join(root, "include", "cuda_runtime.h")):
            return root
    return None


def _import_installed_torch() -> None:
    """Make the interpreter's own torch importable, also inside pip's isolated build environment.

    A plain ``pip install ./ops`` (no pyproject.toml here, and no ``wheel`` package) builds in an isolated environment
    that hides the installed torch. Declaring torch as a build requirement would download a second torch, possibly of
    another version, and the extension would not load into the first. So the isolated build borrows the site-packages
    of the installed torch (found by the same interpreter started without the isolation's PYTHONPATH, ``-I``),
    appended after the build environment's own packages.
    """
    try:
        import torch  # noqa: F401
    except ImportError:
        probe = "import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))"
        found = subprocess.run([sys.executable, "-I", "-c", probe], capture_output=True, text=True, check=False)
        if found.returncode != 0:
            sys.exit(f"ops/setup.py: torch is not installed for {sys.executable}; install it first")
        sys.path.append(found.stdout.strip())
        print(f"ops/setup.py: building against the installed torch in {found.stdout.strip()}")


if __name__ == "__main__":
    home = cuda_home()
    if home is None:
        sys.exit("ops/setup.py: no CUDA toolkit found (nvcc and include/cuda_runtime.h); install one or set CUDA_HOME")
    os.environ.setdefault("CUDA_HOME", home)
    _import_installed_torch()
    import torch
    from torch.utils.cpp_extension import BuildExtension, CUDAExtension

    if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        # torch would otherwise build for every architecture it knows, which takes many minutes.
        os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_ARCHS_WITHOUT_GPU
        print(f"ops/setup.py: no GPU visible, building for TORCH_CUDA_ARCH_LIST={DEFAULT_ARCHS_WITHOUT_GPU}")

    from setuptools import setup

    setup(
        name="freemask-msda",
        version="0.1.0",
        description="CUDA multi-scale deformable attention for freemask (forward and backward, fp32/fp16/bf16/fp64)",
        ext_modules=[
            CUDAExtension(
                "freemask_msda",
                sources=[os.path.relpath(os.path.join(OPS_DIR, s)) for s in SOURCES],
                extra_compile_args={"cxx": ["-O3"], "nvcc": NVCC_FLAGS},
            )
        ],
        cmdclass={"build_ext": BuildExtension},
    )
