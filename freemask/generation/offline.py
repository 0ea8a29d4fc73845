"""Local-only loading: diffusers imported with the hub switched off, and the user's paths checked first.

Generation never downloads. ``HF_HUB_OFFLINE`` is read by huggingface_hub when it is imported, so it is set before
the first import of diffusers / transformers; every load also passes ``local_files_only=True``. Paths are checked
before any model is built, so a missing folder or a hub name costs one line, not a traceback after the imports.
"""

import os
import re
from typing import Any, Iterable, List

from .errors import GenerationError

_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth")
# Loading a pipeline from local files only, without the safety checker (never part of FreestyleNet's sampling).
LOCAL_PIPELINE = {
    "local_files_only": True,
    "safety_checker": None,
    "feature_extractor": None,
    "requires_safety_checker": False,
}


def import_diffusers() -> Any:
    """The ``diffusers`` module, imported with hub access switched off for this process."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    import diffusers

    return diffusers


def refuse_remote(path: str, flag: str) -> None:
    """GenerationError when ``path`` is a URL, or a hub name ("org/model") that is not a local path."""
    if "://" in path:
        raise GenerationError(f"{flag} {path} is a URL; generation never downloads: download it, pass the local path")
    if not os.path.exists(path) and _HUB_NAME.match(path):
        raise GenerationError(
            f"{flag} {path} looks like a Hugging Face hub name and is not a local path; generation never downloads: "
            f"on a machine with network access run `hf download {path} --local-dir <folder>` and pass that folder"
        )


def require_file(path: str, flag: str, what: str) -> None:
    refuse_remote(path, flag)
    if not os.path.isfile(path):
        raise GenerationError(f"{flag} {path}: no such file; pass the local path of {what}")


def require_folder(path: str, flag: str, required: Iterable[str], what: str, how: str) -> None:
    """GenerationError naming every missing entry of ``required`` (relative paths; ``a|b`` means either)."""
    refuse_remote(path, flag)
    if not os.path.isdir(path):
        raise GenerationError(f"{flag} {path}: no such folder; it must hold {what}; {how}")
    missing = [entry for entry in required if not any(os.path.exists(os.path.join(path, e)) for e in entry.split("|"))]
    if missing:
        missing = [" or ".join(entry.split("|")) for entry in missing]
        raise GenerationError(f"{flag} {path} lacks {', '.join(missing)}; it must hold {what}; {how}")


def weight_files_in(folders: Iterable[str]) -> List[str]:
    """The weight files directly inside ``folders``, sorted: what a manifest hashes for a diffusers folder."""
    found = []
    for folder in folders:
        if os.path.isdir(folder):
            found += [os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(WEIGHT_SUFFIXES)]
    return sorted(found)
