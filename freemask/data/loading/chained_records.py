"""Several record sequences read as one, each kept in its own storage.

Why: the training loader concatenates its datasets (TRAIN, then TRAIN_SYN) and indexes the whole. A synthetic split
comes in its compact shared-memory form (:class:`~.synthetic_records.SyntheticRecords`), the other datasets as a
:class:`~.record_buffer.RecordBuffer` each; copying them into one storage would mean building every dict again.
"""

import bisect
import itertools
from collections.abc import Sequence
from typing import Any, Iterator, List

from .shared_records import SharedRecords

__all__ = ["ChainedRecords"]


class ChainedRecords(SharedRecords):
    """The records of ``parts`` one after the other: ``chain[i]`` is item ``i`` of their concatenation, found by a
    bisection of the cumulative lengths; negative indices and ``IndexError`` behave as for a list, a slice gives a
    list. Pickling pickles the parts (a shared-memory part passes its handles through ``multiprocessing``)."""

    def __init__(self, parts: Sequence[SharedRecords]) -> None:
        self.parts = list(parts)
        self._ends: List[int] = list(itertools.accumulate(len(part) for part in self.parts))

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    def _record(self, index: int) -> Any:
        part = bisect.bisect_right(self._ends, index)
        return self.parts[part][index - (self._ends[part - 1] if part else 0)]

    def __iter__(self) -> Iterator[Any]:
        return itertools.chain.from_iterable(self.parts)

    @property
    def nbytes(self) -> int:
        """Bytes of shared memory held by the parts (each a RecordBuffer or another sequence with ``nbytes``)."""
        return sum(part.nbytes for part in self.parts)

    def __repr__(self) -> str:
        return f"ChainedRecords({len(self)} records in {len(self.parts)} parts)"
