"""``python script.py args`` without its seconds of imports: the script runs in a fork of a server that has
already imported torch, torchvision and timm.

Why: on a 2-core machine a new interpreter spends ~8 s of CPU importing those (timm -> torchvision ->
torch._dynamo, sympy) before a tool reads its first argument. A command that runs other commands (the toy pipeline's
fourteen steps, the test suite's hundred tool runs) pays that every time. The server (multiprocessing's
``forkserver``, started on the first call, one per process) imports only those third-party packages and computes
nothing, so a fork of it is as clean as a new interpreter: no thread pool, no CUDA context, no FreeMask module. The
fork then becomes the command: the script runs as ``__main__`` with the given argv, environment (read at run time;
libgomp's ``OMP_NUM_THREADS`` is applied through ``torch.set_num_threads``), working directory and sys.path
(the script's folder, ``PYTHONPATH``, then a new interpreter's), its stdout and stderr appended to files, and its exit
code as the interpreter's (``sys.exit`` codes and messages, a traceback and 1 for an escaped exception, death by
SIGINT for an uncaught Ctrl-C; non-daemon threads and atexit handlers finished first); multiprocessing sees a main
process with the platform's start method. FreeMask's own modules are imported by the command itself, so their
import-time behaviour (a warning on stderr, a registration) is what a new interpreter shows.

What differs from a new interpreter: environment variables read at import by torch, torchvision or timm are the
server's (none of FreeMask's settings are), the command shares its caller's process group unless
``start_new_session`` (a Ctrl-C in the terminal reaches both, as it would reach a subprocess), and it dies with its
caller (``worker_pool.die_with_parent``: a killed pipeline leaves no step running).
"""

import atexit
import functools
import itertools
import json
import logging
import multiprocessing
import os
import runpy
import signal
import subprocess
import sys
import threading
import traceback
import types
from typing import List, Mapping, Optional, Sequence, Tuple

from .worker_pool import die_with_parent

PRELOAD = ["torch", "torchvision", "timm"]  # third-party only (see the module docstring)
# A command that got Ctrl-C with its caller (same terminal) may be saving a checkpoint: it gets this long to finish.
INTERRUPT_GRACE_S = 30.0

@functools.lru_cache(maxsize=None)
def _new_interpreter_sys_path() -> Tuple[str, ...]:
    """sys.path of a new interpreter without PYTHONPATH, less its first entry (the script's folder goes there)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = "import json, sys; print(json.dumps(sys.path[1:]))"
    return tuple(json.loads(subprocess.check_output([sys.executable, "-c", code], env=env, cwd="/")))


def warm_forkserver() -> multiprocessing.context.BaseContext:
    """multiprocessing's ``forkserver`` context, its server to import :data:`PRELOAD` (read when the server starts:
    at this process's first start through it, by this module, ``launch()`` or ``torch.multiprocessing``)."""
    multiprocessing.set_forkserver_preload(PRELOAD)
    return multiprocessing.get_context("forkserver")


def _exit_code(exc: BaseException) -> int:
    """The interpreter's exit code for ``exc`` leaving ``__main__``, after printing what it would print."""
    if isinstance(exc, SystemExit):
        if exc.code is None:
            return 0
        if isinstance(exc.code, int):
            return exc.code
        print(exc.code, file=sys.stderr)
        return 1
    traceback.print_exception(exc)
    return 1


def _finish_like_the_interpreter() -> None:
    """The interpreter's exit: non-daemon threads joined, atexit handlers run, logging and stdio flushed."""
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()


def _as_a_main_process() -> None:
    """multiprocessing's view of this fork as a new interpreter's: the main process, without a parent or children,
    with the platform's default start method (``forkserver`` otherwise: DataLoader workers would start through it)."""
    process = multiprocessing.current_process()
    process._identity, process._name, process._parent_pid, process._parent_name = (), "MainProcess", None, None
    multiprocessing.process._parent_process = None
    multiprocessing.process._children = set()
    multiprocessing.process._process_counter = itertools.count(1)
    multiprocessing.set_start_method(None, force=True)


def _redirect(stdout: str, stderr: str) -> None:
    """File descriptors 1 and 2 appended to the two files (one open file when both paths are the same)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    out = os.open(stdout, flags, 0o644)
    err = out if stderr == stdout else os.open(stderr, flags, 0o644)
    os.dup2(out, 1)
    os.dup2(err, 2)
    for handle in {out, err}:
        os.close(handle)


def _become(
    argv: List[str],
    env: Mapping[str, str],
    cwd: str,
    outputs: Sequence[str],
    path: Sequence[str],
    new_session: bool,
    caller: int,
    ctrl_c_ignored: bool,
) -> None:
    """In the fork: run ``python argv[0] argv[1:]`` (a script, or -m and a module) in ``cwd`` with ``env``, then
    exit with its code; killed with ``caller`` (the process that started it), as a command dies with a pipeline step
    that is killed."""
    import torch

    die_with_parent(caller)
    # SIGINT as a new interpreter started now by the caller has it: ignored only if the caller ignores it now (an
    # ignored signal survives exec). The server's own disposition is the caller's at the server's start, which may
    # have been ignored then (a pool worker's set-up in the same process) and would leave every later command deaf to
    # Ctrl-C.
    signal.signal(signal.SIGINT, signal.SIG_IGN if ctrl_c_ignored else signal.default_int_handler)
    if new_session:
        os.setsid()
    _redirect(*outputs)
    _as_a_main_process()
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    torch.set_num_threads(int(env.get("OMP_NUM_THREADS") or len(os.sched_getaffinity(0))))
    module = argv[1] if argv[0] == "-m" else None  # ``python -m module args``: the working directory comes first
    script = os.path.abspath(argv[0])  # __main__.__file__ is absolute since Python 3.9; sys.argv[0] stays as given
    first = os.getcwd() if module else os.path.dirname(script)
    sys.path[:] = [first, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p], *path]
    sys.argv[:] = argv[1:] if module else argv  # run_module makes argv[0] the module's file, as -m does
    code, interrupted = 0, False
    try:
        if module:  # its __main__ module's __spec__ is where multiprocessing finds the code its workers re-run
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        else:
            main = types.ModuleType("__main__")
            main.__file__ = script
            sys.modules["__main__"] = main  # where multiprocessing finds the script its workers re-run (--num-gpus 2)
            with open(script, "rb") as source:
                exec(compile(source.read(), script, "exec"), main.__dict__)
    except BaseException as exc:  # noqa: BLE001 - every way out of __main__ becomes an exit code, as in the interpreter
        code, interrupted = _exit_code(exc), isinstance(exc, KeyboardInterrupt)
    try:
        _finish_like_the_interpreter()
    except BaseException as exc:  # noqa: BLE001
        code = code or _exit_code(exc)
    if interrupted:  # the interpreter ends an uncaught Ctrl-C by the signal itself (exit status -2 for the caller)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(code)


class ForkedScript:
    """A command started by :func:`start_script`, used as a ``subprocess.Popen``: ``pid``, ``poll()``, ``wait()``,
    ``send_signal()``, ``kill()``; ``returncode`` is None while it runs, negative for the signal that ended it."""

    def __init__(self, process: multiprocessing.process.BaseProcess, command: List[str]) -> None:
        self._process = process
        self.args = command

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> Optional[int]:
        return self._process.exitcode

    def poll(self) -> Optional[int]:
        return self._process.exitcode

    def wait(self, timeout: Optional[float] = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self._process.exitcode

    def send_signal(self, signum: int) -> None:
        if self._process.exitcode is None:
            os.kill(self._process.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def start_script(
    argv: Sequence[object],
    *,
    stdout: str,
    stderr: str,
    env: Optional[Mapping[str, str]] = None,
    cwd: Optional[str] = None,
    start_new_session: bool = False,
) -> ForkedScript:
    """Start ``python argv[0] argv[1:]`` in a fork of the server, its output appended to the files ``stdout`` and
    ``stderr`` (the same path for both merges them). ``argv`` is a script and its arguments, or ``-m``, a module and
    its arguments.

    ``env`` is the whole environment (``os.environ`` when None), ``cwd`` the working directory and
    ``start_new_session`` a session (and process group) of its own, as for subprocess.
    """
    argv = [str(arg) for arg in argv]
    if not argv or not (argv[0].endswith(".py") or (argv[0] == "-m" and len(argv) > 1)):
        raise ValueError(f"start_script runs a Python script or -m module, not {argv[:2]}")
    env = dict(os.environ if env is None else env)
    folder = str(cwd or os.getcwd())
    ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    args = (argv, env, folder, (stdout, stderr), _new_interpreter_sys_path(), start_new_session, os.getpid(), ignored)
    process = warm_forkserver().Process(target=_become, args=args)
    process.start()
    return ForkedScript(process, [sys.executable, *argv])


def run_script(
    argv: Sequence[object],
    *,
    stdout: str,
    stderr: str,
    env: Optional[Mapping[str, str]] = None,
    cwd: Optional[str] = None,
    timeout: Optional[float] = None,
) -> int:
    """Exit code of :func:`start_script`'s command, waited for; past ``timeout`` seconds it is killed and
    ``subprocess.TimeoutExpired`` raised."""
    script = start_script(argv, stdout=stdout, stderr=stderr, env=env, cwd=cwd)
    try:
        return script.wait(timeout)
    except subprocess.TimeoutExpired:
        script.kill()
        script.wait()
        raise
    except BaseException:  # Ctrl-C reached the command too (same terminal): let it finish what it saves
        try:
            script.wait(INTERRUPT_GRACE_S)
        except subprocess.TimeoutExpired:
            script.kill()
        raise
