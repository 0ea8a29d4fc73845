"""``import freemask.data`` and the light tools built on it load no torch (issue 17 item 5).

Registering datasets, preparing them and generating the toy data need numpy and OpenCV only; torch costs seconds of
import on every run of these tools. Each check runs in a fresh interpreter, since this test process has torch loaded.
"""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LIGHT_TOOLS = sorted(str(p.relative_to(REPO)) for p in (REPO / "datasets").glob("prepare_*.py")) + [
    "tools/make_toy_dataset.py",
    "tools/visualize_filtered.py",
]
TORCH_LOADED = "import sys; loaded = 'torch' in sys.modules; print('torch loaded' if loaded else 'no torch')"


def run_python(code: str) -> list[str]:
    """Lines the code printed in a fresh interpreter started in the repository root."""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip().splitlines()


def test_importing_the_package_loads_no_torch():
    assert run_python(f"import freemask.data; {TORCH_LOADED}") == ["no torch"]


def test_the_loaders_come_from_their_module():
    """The package has no loader attribute (no module ``__getattr__`` loading, issue 27): the loaders are imported from
    :mod:`freemask.data.loading.build`, which loads torch. Also shows the probe can fail: it reports torch then."""
    code = (
        f"import freemask.data as d; {TORCH_LOADED}; print(hasattr(d, 'build_train_loader'))\n"
        "from freemask.data.loading.build import build_train_loader\n"
        f"{TORCH_LOADED}; print(build_train_loader.__module__)"
    )
    assert run_python(code) == ["no torch", "False", "torch loaded", "freemask.data.loading.build"]


def test_light_tools_help_loads_no_torch():
    """Every tool's ``--help`` in one interpreter (one start-up instead of 13); the first to load torch is named."""
    code = (
        "import runpy, sys\n"
        f"for script in {LIGHT_TOOLS!r}:\n"
        "    sys.argv = [script, '--help']\n"
        "    try:\n"
        "        runpy.run_path(script, run_name='__main__')\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, script\n"
        "    if 'torch' in sys.modules:\n"
        "        print('torch loaded by', script)\n"
        "        break\n"
        "else:\n"
        "    print('no torch')"
    )
    assert len(LIGHT_TOOLS) >= 13 and run_python(code)[-1] == "no torch"
