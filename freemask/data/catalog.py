"""Dataset and metadata catalogs with detectron2's interface.

A dataset is registered as a name and a function returning its records; the function runs on first use, so
registering every builtin dataset at import touches no disk.

A registered dataset may also register a compact loader (``register_compact``): a function returning the same
records, in the same order, as a read-only ``Sequence`` of dicts that the training loader keeps as it is (records
held in shared memory, which loader workers map instead of receiving a copy), built without a list of dicts. The
synthetic "all" and "filtered" splits have one: 710k dicts, then their encoding, were most of a rank's start-up.
Every other consumer (tools, checks, the filter) reads ``get``'s list.

Every builtin dataset lives under one root, :func:`datasets_root`, which each registration reads when its records
are loaded.
"""

import os
from typing import Any, Callable, Dict, List, Optional, Sequence

from ..errors import UserError


def datasets_root() -> str:
    """``$DETECTRON2_DATASETS`` (``./datasets`` when unset), read at each call so tests and users can change it."""
    return os.environ.get("DETECTRON2_DATASETS", "datasets")


class DatasetNotRegisteredError(UserError, KeyError):
    """A dataset name used in a config was never registered."""


class _DatasetCatalog:
    def __init__(self) -> None:
        self._loaders: Dict[str, Callable[[], List[dict]]] = {}
        self._compact_loaders: Dict[str, Callable[[], Sequence[dict]]] = {}

    def register(self, name: str, loader: Callable[[], List[dict]]) -> None:
        if name in self._loaders:
            raise ValueError(f"dataset '{name}' is already registered")
        self._loaders[name] = loader

    def register_compact(self, name: str, loader: Callable[[], Sequence[dict]]) -> None:
        """A second loader of the registered dataset ``name``: its records, equal to ``get(name)``'s item by item, as
        a read-only sequence held in shared memory (pickling it through ``multiprocessing`` passes handles)."""
        self._check_registered(name)
        if name in self._compact_loaders:
            raise ValueError(f"dataset '{name}' already has a compact loader")
        self._compact_loaders[name] = loader

    def get(self, name: str) -> List[dict]:
        """Records of a dataset: dicts with at least ``file_name`` and ``sem_seg_file_name``."""
        self._check_registered(name)
        return self._loaders[name]()

    def get_compact(self, name: str) -> Optional[Sequence[dict]]:
        """The records of ``name`` from its compact loader, or None when it registered none (then use ``get``)."""
        self._check_registered(name)
        loader = self._compact_loaders.get(name)
        return None if loader is None else loader()

    def _check_registered(self, name: str) -> None:
        if name not in self._loaders:
            known = ", ".join(sorted(self._loaders)) or "none"
            raise DatasetNotRegisteredError(f"dataset '{name}' is not registered; registered datasets: {known}")

    def list(self) -> List[str]:
        return list(self._loaders)

    def remove(self, name: str) -> None:
        self._loaders.pop(name)
        self._compact_loaders.pop(name, None)

    def __contains__(self, name: str) -> bool:
        return name in self._loaders


class Metadata:
    """Attributes of one dataset (``stuff_classes``, ``stuff_colors``, ``ignore_label``, ``evaluator_type`` ...).

    Attributes are set once; setting one again to a different value is an error, which catches two registrations
    disagreeing about the same dataset.
    """

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "name", name)
        # key -> function of no arguments: values computed on each access (paths under $DETECTRON2_DATASETS,
        # read when asked like the datasets themselves, not when the dataset is registered)
        object.__setattr__(self, "_lazy", {})

    def __getattr__(self, key: str) -> Any:
        lazy = self.__dict__.get("_lazy", {})  # not self._lazy: __getattr__ runs before __init__ when unpickling
        if key in lazy:
            return lazy[key]()
        known = ", ".join([k for k in self.__dict__ if k not in ("name", "_lazy")] + list(lazy))
        name = self.__dict__.get("name")
        raise AttributeError(f"metadata of dataset '{name}' has no '{key}' (it has: {known or 'nothing'})")

    def __setattr__(self, key: str, value: Any) -> None:
        if key in self.__dict__.get("_lazy", {}):
            raise ValueError(f"metadata '{key}' of dataset '{self.name}' is computed (set_lazy); it cannot be set")
        if key in self.__dict__ and self.__dict__[key] != value:
            raise ValueError(f"metadata '{key}' of dataset '{self.name}' is already set to a different value")
        object.__setattr__(self, key, value)

    def set_lazy(self, **functions: Callable[[], Any]) -> "Metadata":
        """Attributes whose value is ``function()`` at each access (e.g. a path under the datasets root)."""
        for key in functions:
            if key in self.__dict__:
                raise ValueError(f"metadata '{key}' of dataset '{self.name}' is already set to a value")
        self._lazy.update(functions)
        return self

    def set(self, **kwargs: Any) -> "Metadata":
        for key, value in kwargs.items():
            setattr(self, key, value)
        return self

    def get(self, key: str, default: Any = None) -> Any:
        if key in self._lazy:
            return self._lazy[key]()
        return self.__dict__.get(key, default)

    def as_dict(self) -> Dict[str, Any]:
        values = {k: v for k, v in self.__dict__.items() if k != "_lazy"}
        values.update({k: f() for k, f in self._lazy.items()})
        return values


class _MetadataCatalog:
    def __init__(self) -> None:
        self._metadata: Dict[str, Metadata] = {}

    def get(self, name: str) -> Metadata:
        """The metadata of ``name``, created empty on first access (as in detectron2)."""
        if name not in self._metadata:
            self._metadata[name] = Metadata(name)
        return self._metadata[name]

    def remove(self, name: str) -> None:
        self._metadata.pop(name, None)


DatasetCatalog = _DatasetCatalog()
MetadataCatalog = _MetadataCatalog()
