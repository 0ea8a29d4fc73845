"""Pre-trained backbone weights from a local file, with a report of what did and did not load.

Checkpoints come in several layouts: timm's own (.pth or .safetensors), the official Swin release (tensors under
``"model"``, downsampling at the end of a stage, ``relative_position_index``/``attn_mask`` buffers, a ``head``) and
torchvision's ResNets (timm's names plus ``fc.*``). timm already knows how to convert its families' foreign layouts
(``checkpoint_filter_fn`` in the model's module), so we reuse that rather than keep our own tables, then load with
``strict=False`` and *say* what was left out: a silent partial load is the classic way to train from scratch by
accident.
"""

import logging
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Tuple

import timm
import torch
from torch import nn

from ...errors import UserError

logger = logging.getLogger(__name__)

_WRAPPER_KEYS = ("model", "state_dict")  # official Swin / generic training checkpoints nest the tensors
_MAX_LISTED = 20


class WeightFileError(UserError, ValueError):
    """A weight file exists but cannot be used (unreadable, no tensors, or from a different architecture)."""


@dataclass
class LoadReport:
    """What :func:`load_timm_weights` did, with keys in the model's (full, non-``features_only``) naming."""

    path: str
    loaded: int
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    mismatched: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]] = field(default_factory=list)

    def summary(self) -> str:
        def listed(keys: List[Any]) -> str:
            more = f" ... (+{len(keys) - _MAX_LISTED})" if len(keys) > _MAX_LISTED else ""
            return ", ".join(str(k) for k in keys[:_MAX_LISTED]) + more

        lines = [f"Backbone weights from {self.path}: {self.loaded} tensors loaded"]
        lines.append(f"  missing ({len(self.missing)}): {listed(self.missing)}")
        lines.append(f"  unexpected ({len(self.unexpected)}): {listed(self.unexpected)}")
        mism = [f"{k} file {tuple(a)} vs model {tuple(b)}" for k, a, b in self.mismatched]
        lines.append(f"  shape mismatches, not loaded ({len(mism)}): {listed(mism)}")
        return "\n".join(lines)


def check_local_file(path: str) -> None:
    """Refuse URLs, hub names and missing paths: nothing is downloaded at run time (a download can hang a job)."""
    if "://" in path or not os.path.isfile(path):
        raise FileNotFoundError(
            f"MODEL.BACKBONE.PRETRAINED={path!r} is not a local file; download the weights and pass "
            "the file's path (nothing is downloaded at run time)"
        )


def read_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """Read ``{name: tensor}`` from a .pth/.pt/.bin (``torch.load(weights_only=True)``) or .safetensors file.

    Unwraps ``{"model": ...}`` / ``{"state_dict": ...}`` and a DataParallel ``module.`` prefix; drops non-tensors.
    """
    check_local_file(path)
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            state: Any = load_file(path, device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt, truncated, pickled objects: all one user-facing problem
        raise WeightFileError(
            f"{path}: cannot be read as a weight file ({type(e).__name__}); re-download it or check its format"
        ) from e
    while isinstance(state, Mapping) and any(isinstance(state.get(k), Mapping) for k in _WRAPPER_KEYS):
        state = next(state[k] for k in _WRAPPER_KEYS if isinstance(state.get(k), Mapping))
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)} if isinstance(state, Mapping) else {}
    if not tensors:
        raise WeightFileError(f"{path}: contains no tensors; pass a state dict saved with torch.save or safetensors")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors


def load_timm_weights(body: nn.Module, model_name: str, path: str, model_kwargs: Mapping[str, Any]) -> LoadReport:
    """Load ``path`` into ``body`` (a ``timm.create_model(model_name, features_only=True, **model_kwargs)``).

    Checkpoints use the names of the full timm model, so a reference model is built on the meta device (free: no
    memory, no init) to run timm's ``checkpoint_filter_fn`` for the family (which also resizes relative position bias
    tables for another window size) and to map names onto ``body``, whose flattened stages are ``layers_0`` where
    the full model has ``layers.0``. Tensors of another shape are reported, not loaded.
    """
    state = read_state_dict(path)
    with torch.device("meta"):
        reference = timm.create_model(model_name, **model_kwargs)
    filter_fn = getattr(sys.modules[type(reference).__module__], "checkpoint_filter_fn", None)
    if filter_fn is not None:
        try:
            state = filter_fn(state, reference)
        except Exception as e:
            raise WeightFileError(f"{path}: does not look like {model_name} weights ({type(e).__name__}: {e})") from e
    target = body.state_dict()
    to_body: Dict[str, str] = {}
    for key in reference.state_dict():
        for candidate in (key, key.replace(".", "_", 1)):
            if candidate in target:
                to_body[key] = candidate
                break
    loadable: Dict[str, torch.Tensor] = {}
    report = LoadReport(path=path, loaded=0)
    for key, value in state.items():
        dest = to_body.get(key)
        if dest is None:
            report.unexpected.append(key)
        elif value.shape != target[dest].shape:
            report.mismatched.append((key, tuple(value.shape), tuple(target[dest].shape)))
        else:
            loadable[dest] = value
    body.load_state_dict(loadable, strict=False)
    report.loaded = len(loadable)
    body_to_full = {v: k for k, v in to_body.items()}
    report.missing = sorted(body_to_full.get(k, k) for k in target if k not in loadable)
    return report
