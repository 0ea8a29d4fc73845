"""Open a released checkpoint of any of the supported kinds without executing anything from it.

* detectron2 ``.pkl``: a plain pickle of numpy arrays, read by :mod:`.safe_pickle` (other globals are refused).
* torch zip files (``.pth``): ``torch.load(weights_only=True)``. Training checkpoints often carry objects besides the
  weights (MMEngine stores its message hub and numpy arrays next to ``state_dict``); ``weights_only`` would refuse
  the whole file for them. We list those globals without running the pickle and let each resolve to an inert
  placeholder that ignores its arguments and state, so nothing foreign is imported or called, the tensors load,
  and a placeholder that lands among the weights is caught later as a non-tensor.
* legacy (pre-zip) torch files: ``torch.load(weights_only=True)`` as it is.
"""

import os
import pickle
import zipfile
from typing import Any

import numpy as np
import torch

from ..checkpointer import CheckpointError
from .safe_pickle import RefusedGlobalError, load_weights_pickle

_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # first record of a pre-zip torch.save file


class IgnoredObject:
    """Stands in for a non-weight object of a checkpoint: built from anything, holds nothing, does nothing."""

    def __new__(cls, *args: Any, **kwargs: Any):
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


def read_checkpoint(path: str) -> tuple[Any, list[str]]:
    """``(content, ignored)``: the file's top-level object and the globals replaced by :class:`IgnoredObject`.

    Raises CheckpointError, naming the file, for a missing, empty, corrupt or unsafe file.
    """
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file; pass the path of a downloaded checkpoint")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"{path}: the file is empty; re-download it")
    try:
        if zipfile.is_zipfile(path):
            return _read_torch_zip(path)
        with open(path, "rb") as f:
            content = load_weights_pickle(f)
        if isinstance(content, int) and content == _TORCH_LEGACY_MAGIC:
            return torch.load(path, map_location="cpu", weights_only=True), []
        return content, []
    except RefusedGlobalError as e:
        raise CheckpointError(
            f"{path}: the pickle asks for {e}, which weight files never need; refusing to load it (only numpy "
            "arrays and plain containers are read from .pkl files)"
        ) from None
    except pickle.UnpicklingError as e:
        if "weights_only" not in str(e):
            raise CheckpointError(f"{path}: corrupt or not a checkpoint ({_short(e)}); re-download it") from None
        raise CheckpointError(
            f"{path}: holds Python objects besides tensors that this torch cannot set aside; with torch >= 2.6 "
            "they are ignored and the weights read"
        ) from None
    except OSError as e:
        raise CheckpointError(
            f"{path}: cannot be read ({e.strerror or e}); check the path and its permissions"
        ) from None
    except Exception as e:  # nothing from the file ran (restricted unpicklers): any other failure means bad bytes
        raise CheckpointError(f"{path}: corrupt, truncated or not a checkpoint ({_short(e)}); re-download it") from e


def _short(error: BaseException) -> str:
    return " ".join(str(error).split())[:200] or type(error).__name__


def _read_torch_zip(path: str) -> tuple[Any, list[str]]:
    serialization = torch.serialization
    if torch.__version__ < "2.6":  # no way to set foreign objects aside: weights_only accepts or refuses the file
        return torch.load(path, map_location="cpu", weights_only=True), []
    foreign = sorted(serialization.get_unsafe_globals_in_checkpoint(path))
    with serialization.safe_globals([(IgnoredObject, name) for name in foreign]):
        return torch.load(path, map_location="cpu", weights_only=True), foreign


def as_tensor(key: str, value: Any, path: str) -> torch.Tensor:
    """A weight as a tensor (detectron2 ``.pkl`` files hold numpy arrays); anything else is a broken file."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return torch.from_numpy(np.ascontiguousarray(value))
    kind = f"array of {value.dtype}" if isinstance(value, np.ndarray) else type(value).__name__
    raise CheckpointError(f"{path}: weight {key!r} is a {kind}, not a numeric tensor; the file is not a checkpoint")
