"""Reading a CLIP weight file the user supplies: safely, with one clear line for every way it can be wrong.

Nothing is downloaded. A plain state dict is read with ``torch.load(weights_only=True)``. OpenAI's released ``.pt``
files are TorchScript archives, which can run code when loaded; they are read only when the user allows it
(``MODEL.CLIP_ADAPTER.ALLOW_TORCHSCRIPT``), or converted once by ``tools/convert_clip.py`` into a plain state dict
(OpenAI's loader opens them with ``torch.jit.load`` first: bytedance/FreeSeg, third_party/CLIP/clip/clip.py,
``load``).

OpenAI's files are recognised by three scalar entries, ``input_resolution``, ``context_length`` and ``vocab_size``,
that their archives carry next to the weights: OpenAI's own ``clip.build_model`` and open_clip's
``load_openai_model`` / ``load_state_dict`` delete exactly these keys before loading (open_clip 3.3.0
``factory.py`` and ``model.py::build_model_from_openai_state_dict``), and a state dict saved from an open_clip model
never has them. The conversion tool keeps them, so the mark survives conversion. The key layout alone cannot tell:
open_clip's ``CLIP`` uses OpenAI's parameter names.
"""

import os
import pickle
import warnings
import zipfile
from typing import Dict, Optional, Tuple

import torch

from ...commands import hint
from ...utils.atomic import atomic_torch_save
from .errors import ClipError

# Entries of OpenAI's archives that are not weights (see the module docstring): the mark of OpenAI weights.
OPENAI_MARKER_KEYS = ("input_resolution", "context_length", "vocab_size")
# Buffers that a traced (TorchScript) open_clip model stores although they are computed, not learned.
COMPUTED_BUFFERS = ("attn_mask",)
_FIX_KEY = "MODEL.CLIP_ADAPTER.CLIP_WEIGHTS"


def is_torchscript_archive(path: str) -> bool:
    """Whether ``path`` is a TorchScript zip archive (it holds a ``constants.pkl`` record, as torch itself tests)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name == "constants.pkl" or name.endswith("/constants.pkl") for name in archive.namelist())


def read_state_dict(path: str, allow_torchscript: bool = False) -> Dict[str, torch.Tensor]:
    """The tensors of a CLIP weight file, as stored (OpenAI's marker entries included).

    Accepts a plain state dict (also ``.safetensors``, as open_clip's own releases), one wrapped as
    ``{"state_dict": ...}`` or ``{"model": ...}`` (training checkpoints) with or without DDP's ``module.`` prefix,
    and, with ``allow_torchscript``, a TorchScript archive.
    """
    if not os.path.isfile(path):
        raise ClipError(
            f"{path}: CLIP weights not found (only local files are read, nothing is downloaded); check {_FIX_KEY}"
        )
    if is_torchscript_archive(path):
        if not allow_torchscript:
            raise ClipError(
                f"{path}: is a TorchScript archive (OpenAI's .pt format), which can run code when loaded; convert it "
                f"once with {hint('convert-clip', f'{path} <plain.pth>')} and set {_FIX_KEY} to the result, or, "
                "if you trust the file, set MODEL.CLIP_ADAPTER.ALLOW_TORCHSCRIPT True"
            )
        try:
            with warnings.catch_warnings():  # torch deprecates jit.load; reading OpenAI's archive is why we call it
                warnings.simplefilter("ignore", FutureWarning)
                state = torch.jit.load(path, map_location="cpu").state_dict()
        except (RuntimeError, ValueError) as e:
            raise ClipError(f"{path}: corrupt TorchScript archive ({_short(e)}); re-download it") from None
        return dict(state)
    if path.endswith(".safetensors"):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return _unwrap(load_file(path, device="cpu"), path)
        except (SafetensorError, OSError, ValueError) as e:
            raise ClipError(f"{path}: corrupt safetensors file ({_short(e)}); re-download it") from None
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" in str(e):  # a pickled object; garbage bytes give "Unsupported operand"
            raise ClipError(
                f"{path}: holds Python objects beyond tensors; save the CLIP weights as a plain state dict "
                "(torch.save(model.state_dict(), path))"
            ) from None
        raise ClipError(
            f"{path}: corrupt or not a PyTorch file (unreadable pickle data); re-download or re-save it"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as e:
        raise ClipError(f"{path}: corrupt or truncated file ({_short(e)}); re-download or re-save it") from None
    return _unwrap(loaded, path)


def _unwrap(loaded: object, path: str) -> Dict[str, torch.Tensor]:
    if isinstance(loaded, dict):
        for key in ("state_dict", "model"):
            if isinstance(loaded.get(key), dict):
                loaded = loaded[key]
                break
    if not isinstance(loaded, dict) or not loaded or not all(torch.is_tensor(v) for v in loaded.values()):
        raise ClipError(f"{path}: is not a state dict of tensors; give CLIP weights saved with torch.save(state_dict)")
    if all(k.startswith("module.") for k in loaded):
        loaded = {k[len("module.") :]: v for k, v in loaded.items()}
    return loaded


def _short(error: BaseException) -> str:
    return " ".join(str(error).split())[:200]


def split_openai_marker(state: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], bool]:
    """(the weights without OpenAI's scalar entries and computed buffers, whether the file was marked as OpenAI's)."""
    is_openai = all(k in state for k in OPENAI_MARKER_KEYS)
    drop = set(OPENAI_MARKER_KEYS) | set(COMPUTED_BUFFERS)
    return {k: v for k, v in state.items() if k not in drop}, is_openai


def architecture_signature(state: Dict[str, torch.Tensor]) -> Optional[Tuple[int, ...]]:
    """``(embed_dim, vision layers, vision width, patch, image size, text layers, text width, context)`` of a ViT
    CLIP state dict; None when the tensors are not those of an open_clip / OpenAI ViT CLIP."""
    needed = ("visual.conv1.weight", "visual.positional_embedding", "ln_final.weight", "positional_embedding")
    if not all(k in state for k in needed):
        return None
    conv = state["visual.conv1.weight"]
    patch = int(conv.shape[-1])
    grid = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    projection = state.get("text_projection")
    embed_dim = int(projection.shape[-1]) if projection is not None else int(state["ln_final.weight"].shape[0])
    return (
        embed_dim,
        _count_blocks(state, "visual.transformer.resblocks."),
        int(conv.shape[0]),
        patch,
        patch * grid,
        _count_blocks(state, "transformer.resblocks."),
        int(state["ln_final.weight"].shape[0]),
        int(state["positional_embedding"].shape[0]),
    )


def _count_blocks(state: Dict[str, torch.Tensor], prefix: str) -> int:
    return len({k[len(prefix) :].split(".")[0] for k in state if k.startswith(prefix)})


def describe_signature(signature: Optional[Tuple[int, ...]]) -> str:
    if signature is None:
        return "no ViT CLIP (keys visual.conv1.weight / ln_final.weight missing)"
    embed, v_layers, v_width, patch, size, t_layers, t_width, context = signature
    return (
        f"ViT {v_layers} layers x {v_width}, patch {patch}, {size} px; text {t_layers} layers x {t_width}, "
        f"context {context}; embedding {embed}"
    )


def convert_torchscript(source: str, destination: str) -> int:
    """Write the tensors of the TorchScript archive ``source`` to ``destination`` as a plain state dict (atomically;
    ``source`` is only read). Returns the number of tensors. OpenAI's marker entries are kept (module docstring)."""
    if not is_torchscript_archive(source):
        if os.path.isfile(source):
            raise ClipError(
                f"{source}: is not a TorchScript archive, nothing to convert; set {_FIX_KEY} to it directly"
            )
        raise ClipError(f"{source}: file not found; give the path of OpenAI's .pt file")
    if os.path.exists(destination) and os.path.samefile(source, destination):
        raise ClipError(f"{destination}: is the source file; choose another output path")
    state = read_state_dict(source, allow_torchscript=True)
    os.makedirs(os.path.dirname(os.path.abspath(destination)), exist_ok=True)
    atomic_torch_save({k: v.contiguous() for k, v in state.items()}, destination)
    return len(state)
