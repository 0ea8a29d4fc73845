"""Datasets, mappers, samplers and loaders; importing this registers the builtin datasets (lazily, no disk access)."""

from . import datasets  # noqa: F401  (registers the builtin datasets)
from .build import build_test_loader, build_train_loader
from .catalog import DatasetCatalog, MetadataCatalog

__all__ = ["DatasetCatalog", "MetadataCatalog", "build_train_loader", "build_test_loader"]
