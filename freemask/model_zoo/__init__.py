"""The configs shipped with FreeMask, found by name from a checkout and from an installed wheel alike.

The repository keeps its configs at ``configs/`` (where Mask2Former and detectron2 users look for them); building a
wheel copies every ``configs/**/*.yaml`` into ``freemask/model_zoo/configs/`` (setup.py, ``BuildPyWithConfigs``), as
detectron2 ships ``detectron2/model_zoo/configs`` (facebookresearch/detectron2, setup.py, get_model_zoo_configs).
An editable install or a plain checkout has no such copy and reads the checkout's ``configs/``.

Every place that accepts a config path resolves it with :func:`resolve_config_file`: a path that is a file is used as
is, anything else is looked up among the shipped configs by its name relative to ``configs/`` (with or without the
leading ``configs/``), so ``--config-file configs/toy/...`` works from any directory once the package is installed.
Torch-free and fvcore-free: the command line resolves a mistyped path before anything heavy loads.
"""

import difflib
import glob
import os
from typing import List

from ..errors import ConfigError

__all__ = [
    "configs_root",
    "shipped_configs",
    "get_config_file",
    "resolve_config_file",
    "shipped_config_path",
    "closest_config",
]

_PACKAGED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
_CHECKOUT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs")
# The prefix users type (and the did-you-mean prints): the configs' place in the repository.
PREFIX = "configs/"


def configs_root() -> str:
    """The folder the shipped configs are read from: the wheel's copy inside the package when installed, else the
    checkout's ``configs/`` (editable install, or a script run from the repository)."""
    return _PACKAGED if os.path.isdir(_PACKAGED) or not os.path.isdir(_CHECKOUT) else _CHECKOUT


def shipped_configs() -> List[str]:
    """Every shipped config's name relative to ``configs/`` (``/``-separated, sorted), e.g.
    ``toy/semantic-segmentation/semantic_fpn_R18_toy.yaml``."""
    root = configs_root()
    found = glob.glob(os.path.join(root, "**", "*.yaml"), recursive=True)
    return sorted(os.path.relpath(path, root).replace(os.sep, "/") for path in found)


def shipped_config_path(path: str) -> str:
    """The shipped file named by ``path``, '' when none (an absolute path or one leaving ``configs/`` names none)."""
    name = _relative_name(path)
    if not path or os.path.isabs(path) or name == ".." or name.startswith("../"):
        return ""
    candidate = os.path.join(configs_root(), *name.split("/"))
    return candidate if os.path.isfile(candidate) else ""


def get_config_file(name: str) -> str:
    """The path of the shipped config ``name`` (relative to ``configs/``, with or without the leading ``configs/``).
    ConfigError with the closest shipped name when there is none."""
    path = shipped_config_path(name)
    if path:
        return path
    raise ConfigError(f"{name}: not a shipped config{_suggestion(name)}")


def resolve_config_file(path: str, flag: str = "") -> str:
    """``path`` itself when it is a file, else the shipped config of that name; ConfigError naming ``flag`` (e.g.
    ``--config-file``) with a did-you-mean over the shipped configs when it is neither."""
    if os.path.isfile(path):
        return path
    shipped = shipped_config_path(path)
    if shipped:
        return shipped
    named = f"{flag} {path}" if flag else path
    raise ConfigError(f"{named}: config file not found{_suggestion(path)}")


def closest_config(path: str) -> str:
    """The shipped config closest to ``path`` as ``configs/<name>`` (pastable back from any directory), else the one
    whose file name is closest (a path typed from another folder); '' when none is close. A shipped file of the same
    file name wins over any other: file names survived the move to ``configs/<dataset>/<task>/``, so a path of the
    old layout (``configs/ade20k-150/Base-ADE20K-150.yaml``) is answered with where that file went."""
    shipped = shipped_configs()
    typed = _relative_name(path)
    same_file_name = [name for name in shipped if os.path.basename(name) == os.path.basename(typed)]
    if same_file_name:  # the one sharing most folders (a model family such as semask/), then the closest
        folders = set(typed.split("/")[:-1])
        ranked = [
            (len(folders & set(name.split("/")[:-1])), difflib.SequenceMatcher(None, typed, name).ratio(), name)
            for name in same_file_name
        ]
        return PREFIX + max(ranked)[2]
    scored = [(difflib.SequenceMatcher(None, typed, name).ratio(), name) for name in shipped]
    best = max(scored, default=(0.0, ""))
    if best[0] >= 0.6:
        return PREFIX + best[1]
    by_file_name = {os.path.basename(name): name for name in reversed(shipped)}  # the first of equal file names
    close = difflib.get_close_matches(os.path.basename(path), list(by_file_name), n=1, cutoff=0.8)
    return PREFIX + by_file_name[close[0]] if close else ""


def _suggestion(path: str) -> str:
    hint = closest_config(path)
    if hint:
        return f"; did you mean {hint}?"
    return "; check the path (configs live in configs/<dataset>/<task>/[<model family>/])"


def _relative_name(path: str) -> str:
    """``path`` as a name relative to ``configs/``: a leading ``./`` or ``configs/`` dropped, ``/``-separated."""
    name = os.path.normpath(path).replace(os.sep, "/")
    return name[len(PREFIX) :] if name.startswith(PREFIX) else name
