"""Configuration: the default tree, YAML files with ``_BASE_`` inheritance and ``KEY VALUE`` overrides."""

from .config import CfgNode, ConfigError
from .defaults import _C
from .device import resolve_device


def get_cfg() -> CfgNode:
    """A fresh copy of the complete default configuration tree."""
    return _C.clone()


__all__ = ["CfgNode", "ConfigError", "get_cfg", "resolve_device"]
