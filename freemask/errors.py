"""The base of every error a user can cause, importable without torch so a command line can report it early.

Each package keeps its own error type (ConfigError, DatasetError, CheckpointError ...) next to the code that raises
it; deriving them all from :class:`UserError` lets one runner (:mod:`freemask.cli`) turn any of them into one line
and exit code 1, while a real bug (anything else) keeps its traceback.
"""

import os


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


class TrainingInterrupted(UserError):
    """The run was stopped by Ctrl-C (SIGINT) after saving a checkpoint; the message says how to resume."""

    exit_code = 130


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
