"""Several record sequences read as one, each kept in its own storage.

Why: the training loader concatenates its datasets (TRAIN, then TRAIN_SYN) and indexes the whole. A synthetic split
comes in its compact shared-memory form (:class:`~.synthetic_records.SyntheticRecords`), the other datasets as a
:class:`~.record_buffer.RecordBuffer` each; copying them into one storage would mean building every dict again.
"""

import bisect
import itertools
import operator
from collections.abc import Sequence
from typing import Any, Iterator, List, Union

__all__ = ["ChainedRecords"]


class ChainedRecords(Sequence):
    """The records of ``parts`` one after the other: ``chain[i]`` is item ``i`` of their concatenation, found by a
    bisection of the cumulative lengths; negative indices and ``IndexError`` behave as for a list, a slice gives a
    list. Pickling pickles the parts (a shared-memory part passes its handles through ``multiprocessing``)."""

    def __init__(self, parts: Sequence[Sequence[Any]]) -> None:
        self.parts = list(parts)
        self._ends: List[int] = list(itertools.accumulate(len(part) for part in self.parts))

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    def __getitem__(self, index: Union[int, slice]) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        i = operator.index(index)
        size = len(self)
        if i < 0:
            i += size
        if not 0 <= i < size:
            raise IndexError(f"record index {index} out of range for {size} records")
        part = bisect.bisect_right(self._ends, i)
        return self.parts[part][i - (self._ends[part - 1] if part else 0)]

    def __iter__(self) -> Iterator[Any]:
        return itertools.chain.from_iterable(self.parts)

    @property
    def nbytes(self) -> int:
        """Bytes of shared memory held by the parts (each a RecordBuffer or another sequence with ``nbytes``)."""
        return sum(part.nbytes for part in self.parts)

    def __repr__(self) -> str:
        return f"ChainedRecords({len(self)} records in {len(self.parts)} parts)"
