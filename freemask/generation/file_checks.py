"""The files a generation backend loads, checked before diffusers reads them: a truncated or corrupt file is one line
naming it and how to get it again.

Why not diffusers' own errors: it reports a damaged file 30-60 lines deep, as an ``OSError`` naming the file for some
formats and as a bare ``SafetensorError: incomplete metadata`` naming none for others. The checks here are structural
and read only headers, so they cost milliseconds on gigabyte files: a safetensors file must hold exactly the bytes its
header announces, a PyTorch checkpoint must be a complete zip archive with its ``data.pkl`` (or a legacy pickle), a
config or tokenizer file must parse. What is still wrong in a well-formed file (another model's checkpoint, tensors
of the wrong shape) fails inside diffusers; :func:`load_errors_as_user_errors` around each load reports that in one
line too, with the flag, the path and the same fix.
"""

import contextlib
import json
import os
import zipfile
from typing import Iterable, Iterator, List, Optional, Sequence

from .errors import GenerationError
from .offline import WEIGHT_SUFFIXES

_TEXT_SUFFIXES = (".json", ".txt")
_SAFETENSORS_HEADER = 8  # little-endian u64: the length of the JSON header that follows


def _safetensors_problem(path: str) -> Optional[str]:
    """Why ``path`` is not a complete safetensors file: the 8-byte header length, the JSON header, and tensor data
    ending exactly at the end of the file (the format's own rule)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        prefix = f.read(_SAFETENSORS_HEADER)
        if len(prefix) < _SAFETENSORS_HEADER:
            return f"{size} bytes, shorter than a safetensors header"
        length = int.from_bytes(prefix, "little")
        if length > size - _SAFETENSORS_HEADER:
            return f"its header announces {length} bytes of metadata, the file holds {size - _SAFETENSORS_HEADER}"
        try:
            header = json.loads(f.read(length))
        except ValueError:  # also UnicodeDecodeError
            return "its safetensors header is not JSON"
    if not isinstance(header, dict):
        return "its safetensors header is not a JSON object"
    try:
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (TypeError, KeyError, IndexError, ValueError):
        return "its safetensors header lacks tensor offsets"
    present = size - _SAFETENSORS_HEADER - length
    if end != present:
        return f"its header announces {end} bytes of tensor data, the file holds {present}"
    return None


def _torch_checkpoint_problem(path: str) -> Optional[str]:
    """Why ``path`` is not a loadable PyTorch file: ``torch.save``'s zip archive must be complete (its directory sits
    at the end, so a truncated file has none) and hold a ``data.pkl``; a legacy pickle (first byte 0x80) is passed
    on to the load, which is the only reader of that format."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if not magic:
        return "an empty file"
    if magic[:1] == b"\x80":
        return None
    if magic != b"PK\x03\x04":
        return "neither a PyTorch zip archive nor a pickle"
    size = os.path.getsize(path)
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError):
        return "a zip archive without its directory at the end, as a truncated download leaves it"
    if any(m.header_offset + m.compress_size > size for m in members):
        return "a zip archive whose records run past the end of the file"
    if not any(m.filename.endswith("data.pkl") for m in members):
        return "a zip archive without data.pkl, not a PyTorch checkpoint"
    return None


def _text_problem(path: str) -> Optional[str]:
    """Why a config or tokenizer file cannot be read: not UTF-8, empty, or (``.json``) not JSON."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError:
        return "not UTF-8 text"
    if not text.strip():
        return "an empty file"
    if path.endswith(".json"):
        try:
            json.loads(text)
        except ValueError as e:
            return f"not valid JSON: {e}"
    return None


def file_problem(path: str) -> Optional[str]:
    """Why the file at ``path`` cannot be what its name says (safetensors, a PyTorch checkpoint, JSON or text), or
    None when its structure is sound."""
    if path.endswith(".safetensors"):
        return _safetensors_problem(path)
    if path.endswith(WEIGHT_SUFFIXES):
        return _torch_checkpoint_problem(path)
    return _text_problem(path)


def check_files(paths: Iterable[str], flag: str, what: str, how: str) -> None:
    """GenerationError naming the first file of ``paths`` that is truncated or corrupt, what it should be
    (``what``) and how to get it again (``how``)."""
    for path in paths:
        problem = file_problem(path)
        if problem:
            raise GenerationError(
                f"{flag}: {path} is truncated or corrupt: {problem}; it must be {what}; download it again: {how}"
            )


def folder_files(folder: str, components: Sequence[str], weights: bool) -> List[str]:
    """What a diffusers load of ``folder`` reads: ``model_index.json`` and, in each of ``components`` (subfolders;
    "" is the folder itself), the config and tokenizer files (.json, .txt) and, with ``weights``, the weight files."""
    suffixes = _TEXT_SUFFIXES + (WEIGHT_SUFFIXES if weights else ())
    found = [os.path.join(folder, "model_index.json")]
    for component in components:
        directory = os.path.join(folder, component)
        if os.path.isdir(directory):
            found += [os.path.join(directory, f) for f in sorted(os.listdir(directory)) if f.endswith(suffixes)]
    return sorted(p for p in dict.fromkeys(found) if os.path.isfile(p))


@contextlib.contextmanager
def load_errors_as_user_errors(subject: str, what: str, how: str) -> Iterator[None]:
    """Turn a failed diffusers / transformers load of ``subject`` (the flags and paths it reads, as the user typed
    them) into one GenerationError line saying it should be ``what`` and ``how`` to get it: what the libraries raise
    for files they cannot use (OSError, ValueError, RuntimeError, KeyError, safetensors' and single-file loading's own
    errors), not programming errors (TypeError, AttributeError), which keep their traceback."""
    from diffusers.loaders.single_file_utils import SingleFileComponentError
    from safetensors import SafetensorError

    try:
        yield
    except (OSError, ValueError, RuntimeError, KeyError, SafetensorError, SingleFileComponentError) as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        reason = lines[0] if lines else type(e).__name__
        raise GenerationError(f"{subject} could not be loaded as {what}: {reason}; download it again: {how}") from e
