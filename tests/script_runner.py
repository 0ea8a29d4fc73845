"""``subprocess.run([sys.executable, script, ...], capture_output=True, text=True)`` for the tests, on
``freemask.utils.forked_script``: the suite runs about a hundred tool commands, and each new interpreter spent ~8 s
of CPU importing torch and timm before reading its first argument (most of the suite's time on 2 cores).

A support module (imported by the conftests and the tests that run tools), not a test module. A command a test
signals or kills is started with ``forked_script.start_script`` (a ``Popen``-like handle); commands with a launcher
(``torchrun``), ``-c`` code and the tests of start-up itself (torch-free ``--help``, import order) still start real
interpreters.
"""

import os
import subprocess
import sys
import tempfile
from typing import Mapping, Optional, Sequence

from freemask.utils.forked_script import run_script as run_forked


def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as handle:
        return handle.read()


def run_script(
    argv: Sequence[object],
    *,
    env: Optional[Mapping[str, str]] = None,
    cwd: Optional[str] = None,
    timeout: Optional[float] = None,
    check: bool = False,
) -> subprocess.CompletedProcess:
    """``python argv[0] argv[1:]`` with its stdout and stderr captured as text, forked from the warm server."""
    with tempfile.TemporaryDirectory(prefix="script-run-") as folder:
        stdout, stderr = os.path.join(folder, "stdout"), os.path.join(folder, "stderr")
        code = run_forked(argv, stdout=stdout, stderr=stderr, env=env, cwd=cwd, timeout=timeout)
        result = subprocess.CompletedProcess([sys.executable, *map(str, argv)], code, _read(stdout), _read(stderr))
    if check:
        result.check_returncode()
    return result
