"""The one command-line runner of train_net.py and the tools: early checks, then the tool's main; any user error is
one line on stderr and an exit code, a real bug keeps its traceback. So are the two things that happen to any
command: Ctrl-C (one line, exit 130) and a file system that refuses a write (full, over quota, read-only: one line
naming the file, exit 1).

It parses nothing (each tool owns its arguments) and imports nothing heavy at module level, so a tool that imports
it can answer ``--help`` and reject a mistyped config path before torch is loaded. The order of the checks follows
what is cheapest to get wrong and most expensive to discover late: the config path (a did-you-mean over the
shipped configs), the config itself, the output folders, then the datasets, all before any model is built.
"""

import difflib
import sys
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple

from .errors import (
    WORKER_INTERRUPTED_EXIT,
    Interrupted,
    TrainingInterrupted,
    UserError,
    check_writable_folder,
    file_system_refusal,
    interrupted,
    one_line,
    output_write_error,
)
from .model_zoo import resolve_config_file


def run(main: Callable[..., Any], *args: Any, checks: Sequence[Callable[[], Any]] = ()) -> int:
    """Run each of ``checks`` then ``main(*args)``; returns the exit code: ``main``'s own when it returns an int,
    else 0, or the user error's code after printing ``error: <one line>``; Ctrl-C and a full or read-only file
    system are user errors too. For ``sys.exit(run(...))`` in a tool's ``__main__`` block."""
    try:
        for check in checks:
            check()
        code = main(*args)
    except BaseException as e:  # noqa: BLE001 - KeyboardInterrupt included; anything else is re-raised as it was
        error = as_user_error(e)
        if error is None:
            raise
        return report(error)
    return code if isinstance(code, int) else 0


def as_user_error(error: BaseException) -> Optional[UserError]:
    """The UserError ``error`` is, or stands for (Ctrl-C; a write the file system refused); None for a bug."""
    if isinstance(error, UserError):
        return error
    if isinstance(error, KeyboardInterrupt):
        return interrupted()
    refused = file_system_refusal(error)
    return output_write_error(refused) if refused is not None else None


def in_worker(main: Callable[..., Any], *args: Any) -> None:
    """Entry point of a spawned ``--num-gpus`` worker (``launch(in_worker, ..., args=(main, ...))``): a user error
    exits the worker with its code after one line, which ``launch`` turns into the same exit code in the parent
    instead of a traceback of the worker. A bare Ctrl-C (every rank gets it from the terminal) exits silently with
    WORKER_INTERRUPTED_EXIT: the launching process prints the one line."""
    try:
        main(*args)
    except BaseException as e:  # noqa: BLE001 - see run()
        error = as_user_error(e)
        if error is None:
            raise
        if isinstance(e, KeyboardInterrupt):
            if not _in_process_group():  # one process: launch() called this directly, run() prints the line
                raise
            sys.exit(WORKER_INTERRUPTED_EXIT)
        if isinstance(error, TrainingInterrupted):
            # Every rank stops with the same line; one copy is enough (other errors may differ by rank: all print).
            sys.exit(report(error) if _rank() == 0 else error.exit_code)
        sys.exit(report(error))


def _in_process_group() -> bool:
    """Whether this process is one rank of several (a launch() worker); reads torch only if the job loaded it."""
    dist = sys.modules.get("torch.distributed")
    return dist is not None and dist.is_available() and dist.is_initialized()


def _rank() -> int:
    """This process's rank in the job (0 without a process group)."""
    return sys.modules["torch.distributed"].get_rank() if _in_process_group() else 0


def report(error: UserError) -> int:
    """Print ``error: <one line>`` (an interruption's own line as is) on stderr; returns the exit code."""
    message = one_line(error)
    print(message if isinstance(error, Interrupted) else f"error: {message}", file=sys.stderr, flush=True)
    return error.exit_code


def check_config_path(path: str, flag: str = "--config-file") -> None:
    """ConfigError with the closest shipped config when ``path`` is neither a file nor a shipped config's name
    (:func:`freemask.model_zoo.resolve_config_file`, the resolver every config path goes through)."""
    if path:
        resolve_config_file(path, flag)


def check_output_folders(folders: Iterable[Tuple[str, str]]) -> None:
    """OutputNotWritableError for the first ``(what, path)`` that is not a writable (or creatable) folder."""
    for what, path in folders:
        if path:
            check_writable_folder(path, what)


def check_datasets(names: Iterable[str], what: str = "DATASETS") -> None:
    """Load the records of every named dataset now, so an unregistered name or a missing folder is reported before
    the model is built (about a minute on a busy machine) rather than when the loader first asks for it."""
    from .data import datasets  # noqa: F401  (importing registers the builtin datasets)
    from .data.catalog import DatasetCatalog, DatasetNotRegisteredError
    from .data.errors import DatasetError

    for name in dict.fromkeys(names):
        if name not in DatasetCatalog:
            known = ", ".join(sorted(DatasetCatalog.list()))
            close = difflib.get_close_matches(name, DatasetCatalog.list(), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}?" if close else f"registered datasets: {known}"
            raise DatasetNotRegisteredError(f"{what}: dataset '{name}' is not registered; {hint}")
        if not DatasetCatalog.get(name):
            raise DatasetError(f"{what}: dataset '{name}' has no images; check its folder")


def config_datasets(cfg: Any, eval_only: bool = False) -> List[str]:
    """The datasets a train_net.py run reads: DATASETS.TEST, and DATASETS.TRAIN unless it only evaluates."""
    return list(cfg.DATASETS.TEST) + ([] if eval_only else list(cfg.DATASETS.TRAIN))
