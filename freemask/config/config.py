"""yacs/fvcore config node with key checking that names the offending key and the closest valid one."""

import difflib
import logging
import os
from typing import Any, Dict, Iterator, List, Union

import yaml
from fvcore.common.config import BASE_KEY
from fvcore.common.config import CfgNode as _FvcoreCfgNode

from ..errors import ConfigError
from ..model_zoo import resolve_config_file, shipped_config_path

logger = logging.getLogger(__name__)

# Keys that moved (old -> new). A config file or command line may still use the old name, so users' own configs and
# the config.yaml of earlier runs keep working: it is read as the new key, with one warning per source naming both;
# the merged tree (and so every dumped config) only has the new name.
RENAMED_KEYS: Dict[str, str] = {
    "MODEL.SEGFORMER.VARIANT": "MODEL.BACKBONE.MIT.VARIANT",
    "MODEL.SEMASK.WINDOW_SIZE": "MODEL.BACKBONE.SEMASK.WINDOW_SIZE",
    "MODEL.SEMASK.RESIDUAL": "MODEL.BACKBONE.SEMASK.RESIDUAL",
}


class CfgNode(_FvcoreCfgNode):
    """fvcore's CfgNode (``_BASE_`` inheritance, safe YAML) whose merges fail with one line per mistake.

    yacs reports an unknown key as ``KeyError: 'Non-existent config key: ...'`` from deep inside a recursive merge;
    a user who typed ``SOLVER.BASE_LR_TYPO`` needs to read ``did you mean SOLVER.BASE_LR`` instead.

    ``_BASE_`` may also be a list of files, merged in order before the file's own keys. A recipe (joint training,
    synthetic pre-training) is then written once and combined with every model, instead of being repeated in each
    model's file; a single string keeps detectron2's meaning.
    """

    @classmethod
    def load_yaml_with_base(cls, filename: str) -> Dict[str, Any]:  # type: ignore[override]
        """The file's mapping merged over its ``_BASE_`` file(s), always read with the safe YAML loader.

        fvcore's ``allow_unsafe`` (fall back to ``yaml.unsafe_load``) is not a parameter here: configs are plain YAML,
        so no caller can ask for a loader that runs Python tags.
        """
        with open(filename, encoding="utf-8") as f:
            try:
                cfg = yaml.safe_load(f)
            except yaml.YAMLError as e:
                # Named here, where the file is known: a mistake in a _BASE_ file is not in the child's file.
                raise ConfigError(f"{filename}: not a valid YAML config ({_yaml_problem(e)}){_PLAIN_YAML}") from None
        if not isinstance(cfg, dict):
            return cfg
        _rename_keys(cfg, filename)
        bases: Union[str, List[str], None] = cfg.pop(BASE_KEY, None)
        if bases is None:
            return cfg
        merged: Dict[str, Any] = {}
        for base in [bases] if isinstance(bases, str) else bases:
            path = _base_path(base, filename)
            base_cfg = cls.load_yaml_with_base(path)
            if not isinstance(base_cfg, dict):
                raise ConfigError(f"{path}: a _BASE_ config must hold a mapping of KEY: value (named by {filename})")
            _merge_into(base_cfg, merged)
        _merge_into(cfg, merged)
        return merged

    def merge_from_file(self, cfg_filename: str) -> None:  # type: ignore[override]
        """Merge a config file: a path, or a shipped config's name (``configs/toy/...`` from any directory)."""
        cfg_filename = resolve_config_file(cfg_filename)
        loaded = self.load_yaml_with_base(cfg_filename)
        if not isinstance(loaded, dict):
            raise ConfigError(
                f"{cfg_filename}: a config file must hold a mapping of KEY: value, got {type(loaded).__name__}"
            )
        for key in _flatten_keys(loaded):
            self._check_key(key, cfg_filename)
        try:
            self.merge_from_other_cfg(type(self)(loaded))
        except ValueError as e:
            raise ConfigError(f"{cfg_filename}: {_one_line(e)}") from None

    def merge_from_list(self, cfg_list: List[str]) -> None:
        if len(cfg_list) % 2:
            raise ConfigError(f"overrides must be KEY VALUE pairs; '{cfg_list[-1]}' has no value")
        renamed = [key for key in cfg_list[0::2] if key in RENAMED_KEYS]
        if renamed:
            _warn_renamed(renamed, "command line")
            cfg_list = [RENAMED_KEYS.get(item, item) if i % 2 == 0 else item for i, item in enumerate(cfg_list)]
        for key in cfg_list[0::2]:
            if key.startswith("-"):
                raise ConfigError(
                    f"command line: {key} is an option, not a config key; put options before the trailing KEY VALUE "
                    f"pairs (everything after the first KEY is read as overrides)"
                )
            self._check_key(key, "command line")
        try:
            super().merge_from_list(cfg_list)
        except (ValueError, AssertionError) as e:
            raise ConfigError(f"command line: {_one_line(e)}") from None

    def _check_key(self, full_key: str, source: str) -> None:
        node: Any = self
        for part in full_key.split("."):
            if not isinstance(node, _FvcoreCfgNode) or part not in node:
                valid = list(self.all_keys())
                close = difflib.get_close_matches(full_key, valid, n=1, cutoff=0.5)
                hint = f"; did you mean {close[0]}?" if close else "; see freemask/config/defaults.py for valid keys"
                raise ConfigError(f"{source}: unknown config key {full_key}{hint}")
            node = node[part]

    def all_keys(self, prefix: str = "") -> Iterator[str]:
        """Every leaf key of the tree as a dotted path, e.g. ``SOLVER.BASE_LR``."""
        for key, value in self.items():
            full = f"{prefix}{key}"
            if isinstance(value, _FvcoreCfgNode):
                yield from value.all_keys(full + ".")
            else:
                yield full


def _base_path(base: str, filename: str) -> str:
    """The file a ``_BASE_`` entry of ``filename`` names: relative to ``filename``'s folder (detectron2's rule; inside
    an installed package that is the package's copy), else a shipped config's name (``configs/common/...``)."""
    path = base if os.path.isabs(base) else os.path.join(os.path.dirname(filename), base)
    if os.path.isfile(path):
        return path
    shipped = shipped_config_path(base)
    if shipped:
        return shipped
    raise ConfigError(
        f"{filename}: _BASE_ file {path} not found; fix the path (relative to this file, or a shipped config's name)"
    )


def _rename_keys(tree: Dict[str, Any], source: str) -> None:
    """Move the old names of ``RENAMED_KEYS`` in one file's mapping to their new place, in place.

    Done per file, before the file is merged over its ``_BASE_``, so an old name in a child file still overrides the
    new name in its base, as the same key would.
    """
    found = []
    for old, new in RENAMED_KEYS.items():
        value = _pop(tree, old.split("."))
        if value is _ABSENT:
            continue
        *parents, leaf = new.split(".")
        target = tree
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ConfigError(f"{source}: {'.'.join(parents)} must be a mapping of KEY: value")
        if leaf in target:
            raise ConfigError(f"{source}: sets both {old} and its new name {new}; keep only {new}")
        target[leaf] = value
        found.append(old)
    if found:
        _warn_renamed(found, source)


_ABSENT = object()


def _pop(tree: Any, path: List[str]) -> Any:
    """Remove ``path`` from ``tree`` and return its value (``_ABSENT`` when it is not there). Mappings left empty go
    too: ``MODEL.SEGFORMER: {}`` would otherwise remain as a key of its own."""
    head, *rest = path
    if not isinstance(tree, dict) or head not in tree:
        return _ABSENT
    if not rest:
        return tree.pop(head)
    value = _pop(tree[head], rest)
    if tree[head] == {}:
        del tree[head]
    return value


def _warn_renamed(old_keys: List[str], source: str) -> None:
    moves = ", ".join(f"{old} -> {RENAMED_KEYS[old]}" for old in old_keys)
    logger.warning("%s: renamed config keys read under their new names (%s); rename them there", source, moves)


def _merge_into(src: Dict[str, Any], dst: Dict[str, Any]) -> None:
    """Recursive dict update: mappings merge key by key, any other value replaces."""
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            _merge_into(value, dst[key])
        else:
            dst[key] = value


def _flatten_keys(tree: Dict[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            yield from _flatten_keys(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


_PLAIN_YAML = "; configs are plain YAML, python tags are refused"


def _yaml_problem(error: yaml.YAMLError) -> str:
    """The parser's problem and where it is (``line 3, column 7``), on one line."""
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    mark = getattr(error, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())
