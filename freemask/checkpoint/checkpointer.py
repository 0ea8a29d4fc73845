"""fvcore's Checkpointer with safe loading, atomic saves and errors that name the file."""

import os
import pickle
import zipfile
from typing import Any, Dict, List, Optional

import torch
from fvcore.common.checkpoint import Checkpointer as _FvcoreCheckpointer

from ..errors import UserError
from ..utils.atomic import atomic_torch_save, atomic_write_text, clear_stale_temporaries


class CheckpointError(UserError, RuntimeError):
    """A checkpoint file cannot be used; the message names the file and what to do."""


class Checkpointer(_FvcoreCheckpointer):
    """Saves ``model``, optimizer, scheduler, grad scaler ... and finds ``last_checkpoint`` like detectron2.

    Differences from fvcore: files are loaded with ``weights_only=True`` (a checkpoint is untrusted input) unless the
    caller opts out; a save goes to a temporary file renamed into place, so an interrupted save never leaves a
    truncated ``model_final.pth`` or a ``last_checkpoint`` that points to one.
    """

    def __init__(self, *args: Any, allow_unsafe: bool = False, strict: bool = False, **kwargs: Any) -> None:
        """``strict`` refuses weights that do not fit the model (missing parameters, other shapes) instead of
        logging them: evaluating, filtering with or showing a partly re-initialised model would give plausible
        but meaningless results (a 150-class checkpoint in a 6-class config keeps a random classifier)."""
        super().__init__(*args, **kwargs)
        self.allow_unsafe = allow_unsafe
        self.strict = strict

    def save(self, name: str, **kwargs: Any) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        data.update({key: obj.state_dict() for key, obj in self.checkpointables.items()})
        data.update(kwargs)
        path = os.path.join(self.save_dir, f"{name}.pth")
        self.logger.info("Saving checkpoint to %s", path)
        atomic_torch_save(data, path)
        atomic_write_text(os.path.join(self.save_dir, "last_checkpoint"), os.path.basename(path))

    def remove_stale_temporaries(self) -> List[str]:
        """Delete the temporary files (``.model_0000999.pth.<pid>.tmp``, ``.last_checkpoint.<pid>.tmp``) of saves
        killed midway by a process no longer running; returns their names. Called when training starts, so they do
        not pile up."""
        if not self.save_dir:
            return []
        removed = clear_stale_temporaries(self.save_dir)
        if removed:
            self.logger.info("Removed %d temporary files of interrupted saves: %s", len(removed), ", ".join(removed))
        return removed

    def load(self, path: str, checkpointables: Optional[List[str]] = None) -> Dict[str, Any]:
        if path and not os.path.isfile(path):
            raise CheckpointError(
                f"{path}: checkpoint not found (only local files are read; download a remote one first); "
                "check MODEL.WEIGHTS or OUTPUT_DIR/last_checkpoint"
            )
        return super().load(path, checkpointables)

    def _log_incompatible_keys(self, incompatible: Any) -> None:
        problems = [f"{k}: checkpoint {tuple(a)} vs model {tuple(b)}" for k, a, b in incompatible.incorrect_shapes]
        missing = list(incompatible.missing_keys)
        if missing:
            problems.append(f"{len(missing)} model parameters missing ({', '.join(missing[:3])})")
        if self.strict and problems:
            raise CheckpointError(
                f"MODEL.WEIGHTS does not fit the model built from the config ({'; '.join(problems[:3])}); pass the "
                "config the checkpoint was trained with (a different class count shows up as a classifier shape "
                "mismatch)"
            )
        super()._log_incompatible_keys(incompatible)

    def _load_file(self, f: str) -> Dict[str, Any]:
        try:
            loaded = torch.load(f, map_location="cpu", weights_only=not self.allow_unsafe)
        except pickle.UnpicklingError as e:
            if "weights_only" in str(e):
                raise CheckpointError(
                    f"{f}: holds Python objects beyond tensors and plain containers; if you trust the file, set "
                    "MODEL.ALLOW_UNSAFE_WEIGHTS True"
                ) from None
            raise CheckpointError(
                f"{f}: corrupt or not a PyTorch checkpoint ({e}); re-download or re-save it"
            ) from None
        except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as e:
            reason = " ".join(str(e).split())[:200]
            raise CheckpointError(
                f"{f}: corrupt or truncated checkpoint ({reason}); re-download or re-save it"
            ) from None
        if not isinstance(loaded, dict):
            raise CheckpointError(f"{f}: expected a dict of tensors, got {type(loaded).__name__}")
        if "model" not in loaded:
            loaded = {"model": loaded.get("state_dict", loaded)}
        return loaded
