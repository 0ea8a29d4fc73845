"""Datasets, mappers, samplers and loaders; importing this registers the builtin datasets (lazily, no disk access).

Importing the package loads neither torch nor the loaders: the dataset preparation scripts and the light tools
register and read datasets without torch's seconds of import. ``build_train_loader`` / ``build_test_loader`` are
imported from :mod:`.build` (which needs torch) on first access.
"""

from typing import Any

from . import datasets  # noqa: F401  (registers the builtin datasets)
from .catalog import DatasetCatalog, MetadataCatalog

__all__ = ["DatasetCatalog", "MetadataCatalog", "build_train_loader", "build_test_loader"]

_FROM_BUILD = ("build_train_loader", "build_test_loader")


def __getattr__(name: str) -> Any:
    if name in _FROM_BUILD:
        from . import build

        return getattr(build, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
