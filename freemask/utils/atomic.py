"""Atomic file writes, for every file the project writes that a later run or reader trusts when it exists.

A file appears under its final name only once complete: it is written to a hidden temporary name in the same folder
(``.<name>.<pid>.tmp``, same file system, so the rename is atomic) and then ``os.replace``-d into place. "The file
exists" therefore means "the file is finished", which is what lets the tools skip finished outputs when a killed run
is resumed. A failed write removes its temporary file; a killed one leaves it behind, and
:func:`remove_stale_temporaries` clears those of processes no longer running. A write the file system refuses (full,
over quota, read-only) raises :class:`~freemask.errors.OutputWriteError` naming the file and its folder, which every
command line reports in one line: being atomic, the write left any earlier version of the file intact.

Standard-library only at import (torch is imported inside :func:`atomic_torch_save`), so light tools can import it.
"""

import contextlib
import json
import os
import re
from typing import Any, Iterator, List, Optional

from ..errors import UserError, file_system_refusal, output_write_error

TMP_SUFFIX = ".tmp"
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.tmp$")


def temporary_path(path: str) -> str:
    """The hidden temporary name this process writes ``path`` under before the rename."""
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name}.{os.getpid()}{TMP_SUFFIX}")


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temporary path to write ``path``'s content to; renamed to ``path`` when the block succeeds, removed
    when it raises. For writers that take a file name (``savefig``); they must not choose the format from the
    extension (the temporary name ends in ``.tmp``): pass the format explicitly. Nor may they record the name in the
    file: ``torch.save`` names its zip records after the file, so open the temporary and save to the file object."""
    tmp = temporary_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except Exception as e:
        refused = None if isinstance(e, UserError) else file_system_refusal(e)
        if refused is None:
            raise
        raise output_write_error(refused, path) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically, UTF-8 with ``\\n`` line ends on every platform."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj: Any, path: str) -> None:
    """``torch.save`` that leaves either the complete file or none under ``path``. Saved through the open file, not
    its name: given a name, ``torch.save`` names the records inside the zip after it, and the temporary name holds
    the process id, so the bytes would change from run to run. torch is imported here, not at the top, so that the
    light tools importing this module do not load it."""
    import torch

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)


def atomic_write_json(
    path: str,
    obj: Any,
    indent: Optional[int] = 1,
    sort_keys: bool = False,
    allow_nan: bool = True,
    final_newline: bool = True,
) -> None:
    """Write ``obj`` as UTF-8 JSON to ``path`` atomically. ``indent=None`` writes one line; ``final_newline=False``
    keeps the bytes of files that were written without one (results files other runs are compared with)."""
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, allow_nan=allow_nan)
    atomic_write_text(path, text + "\n" if final_newline else text)


def is_temporary(name: str) -> bool:
    """Whether a file name is one of :func:`temporary_path`'s."""
    return _TEMPORARY.match(name) is not None


def _process_running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def clear_stale_temporaries(folder: str) -> List[str]:
    """Delete the temporary files in ``folder`` left by writes of processes no longer running on this machine
    (those of running processes may be in progress); returns their names, sorted. A missing folder has none."""
    removed = []
    if not os.path.isdir(folder):
        return removed
    with os.scandir(folder) as entries:
        for entry in entries:
            match = _TEMPORARY.match(entry.name)
            if match and entry.is_file() and not _process_running(int(match.group("pid"))):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(entry.path)
                removed.append(entry.name)
    return sorted(removed)


def remove_stale_temporaries(folder: str) -> int:
    """:func:`clear_stale_temporaries`, returning how many it deleted (for callers that only log the count)."""
    return len(clear_stale_temporaries(folder))
