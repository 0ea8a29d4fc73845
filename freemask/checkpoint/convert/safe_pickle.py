"""Read detectron2 ``.pkl`` weight files without letting the pickle run code.

A pickle is a program: ``pickle.load`` imports and calls whatever globals it names (``os.system`` included), so a
downloaded ``.pkl`` must not go through it. A weight file needs only numpy arrays and scalars inside plain
containers, so this unpickler resolves exactly the globals those need and refuses every other one by name, before
anything is called. Safe by construction, not by inspection of the file.
"""

import codecs
import collections
import pickle
from typing import Any, BinaryIO

import numpy as np

_NUMPY_CORE = "numpy._core" if int(np.__version__.split(".")[0]) >= 2 else "numpy.core"


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """Protocol-2 pickles store ``bytes`` (an array's raw data) as ``_codecs.encode(text, "latin1")``."""
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        name = encoding
    if name != "iso8859-1":
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}; weight files use latin1")
    return codecs.encode(text, "latin1", errors)


def _numpy_core(submodule: str, name: str) -> Any:
    """numpy 2 renamed ``numpy.core`` to ``numpy._core``; pickles written under either name load under both."""
    module = __import__(f"{_NUMPY_CORE}.{submodule}", fromlist=[name])
    return getattr(module, name)


# (module, name) -> the object it resolves to. Everything an array, a numpy scalar or an OrderedDict needs.
_ALLOWED = {
    ("collections", "OrderedDict"): lambda: collections.OrderedDict,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("_codecs", "encode"): lambda: _latin1_encode,
    **{
        (f"{core}.{sub}", name): (lambda sub=sub, name=name: _numpy_core(sub, name))
        for core in ("numpy.core", "numpy._core")
        for sub, name in (("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer"))
    },
}


class RefusedGlobalError(pickle.UnpicklingError):
    """The pickle names a global that weight files never need; nothing from it was called."""


class _WeightsUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        resolve = _ALLOWED.get((module, name))
        if resolve is None:
            raise RefusedGlobalError(f"{module}.{name}")
        return resolve()


def load_weights_pickle(f: BinaryIO) -> Any:
    """Unpickle one object from ``f`` allowing only numpy arrays/scalars and builtin containers.

    ``latin1`` decodes Python 2 era strings the way detectron2 does. Raises :class:`RefusedGlobalError` (message:
    the refused ``module.name``) for anything else, and the usual ``pickle.UnpicklingError``/``EOFError`` for a
    corrupt or truncated stream.
    """
    return _WeightsUnpickler(f, encoding="latin1").load()
