"""The base of every error a user can cause, importable without torch so a command line can report it early.

Each package keeps its own error type (ConfigError, DatasetError, CheckpointError ...) next to the code that raises
it; deriving them all from :class:`UserError` lets one runner (:mod:`freemask.cli`) turn any of them into one line
and exit code 1, while a real bug (anything else) keeps its traceback.
"""

import errno
import os
from typing import Optional


class UserError(Exception):
    """A mistake the user can fix; the message is one line naming the file or key and the fix.

    ``exit_code`` is what the command line exits with (1; 130 for an interrupted run, as a shell reports Ctrl-C).
    """

    exit_code = 1

    def __str__(self) -> str:
        # KeyError subclasses would otherwise print their message quoted, as a repr.
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class ConfigError(UserError, ValueError):
    """A config file or override the user wrote is wrong; the message says where and how to fix it.

    Defined here, not in freemask.config (which loads fvcore and yaml), so a mistyped --config-file is reported before
    any of the heavy imports; ``freemask.config.ConfigError`` is this class."""


class ArgumentError(UserError, ValueError):
    """A command-line flag whose value cannot work here (e.g. more --num-gpus than visible GPUs)."""


class PathNotFoundError(UserError, FileNotFoundError):
    """A file or folder the user named does not exist (still a FileNotFoundError for callers that catch that)."""


class OutputNotWritableError(UserError, PermissionError):
    """An output folder cannot be created or written; raised before any work that would be lost."""


class OutputWriteError(UserError):
    """The file system refused a write: full (ENOSPC), over quota (EDQUOT) or read-only (EROFS); the message names the
    file, its folder, what is intact and what to do. ``errno``, ``strerror`` and ``filename`` are the OSError's.

    Deliberately not an OSError: code that collects a failed file and goes on to the next (``except OSError``) must
    not do so here, where every later file would fail alike; the run stops with this one line instead."""

    errno: Optional[int] = None
    strerror: Optional[str] = None
    filename: Optional[str] = None


class Interrupted(UserError):
    """The command was stopped by Ctrl-C (SIGINT); its message (printed as is, without ``error:``) says what was kept
    and how to go on. Exit code 130, as a shell reports a command ended by SIGINT."""

    exit_code = 130


class TrainingInterrupted(Interrupted):
    """Training stopped by Ctrl-C after saving a checkpoint (or keeping the last one); the message says how to
    resume."""


# Code a ``--num-gpus`` worker exits with after a Ctrl-C it did not turn into its own line (a tool without a
# consistent point to stop at): the launching process prints the one line for all of them (engine/launch.py).
WORKER_INTERRUPTED_EXIT = 170

# OS write failures that are the file system's state, not a bug: reported in one line naming the file.
FILE_SYSTEM_ERRNOS = frozenset(
    code for code in (errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EROFS, errno.EFBIG) if code is not None
)


def file_system_refusal(error: BaseException) -> "Optional[OSError | OutputWriteError]":
    """The OS write failure caused by the file system (full, over quota, read-only, file too large) that ``error``
    is or comes from, which the user fixes by freeing space or choosing another folder; None for anything else.

    Followed through ``raise ... from`` and "during handling" chains: a writer may wrap it (torch.save's zip writer
    raises ``RuntimeError: ... unexpected pos`` while cleaning up after the OSError). Another user error is itself."""
    seen = 0
    current: Optional[BaseException] = error
    while current is not None and seen < 8:
        if isinstance(current, (OSError, OutputWriteError)) and current.errno in FILE_SYSTEM_ERRNOS:
            return current
        if isinstance(current, UserError):
            return None
        seen += 1
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return None


def interrupted() -> Interrupted:
    """The one line of a tool stopped by Ctrl-C: outputs are written atomically, so every file present is complete,
    and every tool skips (or resumes from) what it finished."""
    return Interrupted(
        "interrupted (Ctrl-C); every output file already written is complete (files are written atomically): run "
        "the same command again to continue"
    )


def output_write_error(
    error: "OSError | OutputWriteError",
    path: Optional[str] = None,
    intact: Optional[str] = None,
    then: Optional[str] = None,
    same_folder: bool = False,
) -> OutputWriteError:
    """OutputWriteError for the OS ``error`` met writing ``path`` (``error.filename`` when not given).

    ``intact`` says what is still usable (by default: the file itself, unchanged, as every write is atomic);
    ``then`` what to do (by default: free space or choose another folder, then run the same command again);
    ``same_folder`` when going on needs this folder (a resumed training): free space there, no other folder."""
    path = path or error.filename or ""
    folder = os.path.dirname(os.path.abspath(path)) if path else "the output folder"
    code = errno.errorcode.get(error.errno or 0, "")
    reason = f"{error.strerror or error}{f' ({code})' if code else ''}"
    if error.errno == errno.EROFS:
        fix = f"{folder} is read-only: " + ("make it writable" if same_folder else "choose another output folder")
    else:
        fix = f"free space in {folder}" + ("" if same_folder else " (or choose another output folder)")
    what = path or "an output file"
    name = os.path.basename(path)
    if not intact:
        intact = f"{name} was not written (an earlier {name} is intact)" if name else "files written are complete"
    then = then or "run the same command again"
    failure = OutputWriteError(f"cannot write {what}: {reason}; {intact}; {fix}, then {then}")
    failure.errno, failure.strerror, failure.filename = error.errno, error.strerror, path or None
    return failure


def one_line(error: BaseException) -> str:
    """The error's own message on one line, also when a DataLoader worker re-raised it wrapped in the worker's
    traceback ("Caught DatasetError in DataLoader worker process 0. Original Traceback ... DatasetError: <msg>")."""
    lines = str(error).strip().splitlines()
    if len(lines) <= 1:
        return lines[0] if lines else type(error).__name__
    last = lines[-1]
    for prefix in (f"{type(error).__module__}.{type(error).__name__}: ", f"{type(error).__name__}: "):
        if last.startswith(prefix):
            return last[len(prefix) :]
    return last


def check_writable_folder(path: str, what: str) -> None:
    """OutputNotWritableError naming ``what`` (e.g. ``OUTPUT_DIR``) unless ``path`` is, or can be created as, a
    writable folder. Nothing is created: the check only looks at the nearest existing ancestor."""
    target = os.path.abspath(path)
    existing = target
    while not os.path.exists(existing):
        parent = os.path.dirname(existing)
        if parent == existing:
            break
        existing = parent
    if not os.path.isdir(existing):
        raise OutputNotWritableError(
            f"{what} {path}: {existing} is a file, not a folder; choose another output folder"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        verb = "is" if existing == target else f"cannot be created: {existing} is"
        raise OutputNotWritableError(
            f"{what} {path} {verb} not writable; choose a writable folder or fix its permissions"
        )
