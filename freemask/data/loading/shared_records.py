"""What the loaders' record sequences in shared memory have in common: list-like reads, and the shared copy.

A training rank hands its records to its DataLoader workers as one of these (:class:`~.record_buffer.RecordBuffer`,
:class:`~.synthetic_records.SyntheticRecords`, :class:`~.chained_records.ChainedRecords` of them): the bytes live in
shared-memory tensors, so a worker maps them instead of receiving a copy, under any start method.
"""

import operator
from collections.abc import Sequence
from typing import Any, Union

import numpy as np
import torch

__all__ = ["SharedRecords", "shared_copy"]


def shared_copy(values: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """A copy of ``values`` in shared memory, allocated there and filled (``share_memory_()`` on a filled tensor would
    hold two copies at once)."""
    tensor = torch.empty(values.shape, dtype=dtype).share_memory_()
    tensor.numpy()[...] = values
    return tensor


class SharedRecords(Sequence):
    """A read-only sequence of records indexed like a list (negative indices, ``IndexError``, a slice gives a list);
    a subclass reads one record in :meth:`_record` and reports the shared memory it holds in ``nbytes``."""

    def __getitem__(self, index: Union[int, slice]) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        i = operator.index(index)
        size = len(self)
        if i < 0:
            i += size
        if not 0 <= i < size:
            raise IndexError(f"record index {index} out of range for {size} records")
        return self._record(i)

    def _record(self, index: int) -> Any:
        """Record ``index``, ``0 <= index < len(self)``."""
        raise NotImplementedError

    @property
    def nbytes(self) -> int:
        raise NotImplementedError
