"""The records of one synthetic split as two shared-memory tensors of file stems, built without a dict per pair.

Why: a synthetic split's record is a function of its image's stem (``<real_stem>_seed_<int>``) and of constants of
the split (folders, extensions, ``reduce_zero_label``). COCO-Synthetic has 710k pairs: building their dicts (1.1 s)
and then encoding them into a :class:`~.record_buffer.RecordBuffer` (2.6 s) is most of a training rank's start-up.
Here the sorted stems are UTF-8 encoded and joined (C-level calls, a few per pair), with an int64 tensor of offsets;
a record dict is made only when a loader worker reads it. As in RecordBuffer, both tensors live in shared memory, so
pickling through ``multiprocessing`` (DataLoader workers under ``forkserver`` and ``spawn``) sends handles.

A third tensor holds each real stem's length; the seed is ``int()`` of the text after ``<real_stem>_seed_``, at each
read: the value the listing parsed, for seeds of any size (an int64 column would overflow past 2**63).
"""

import operator
from collections.abc import Sequence
from itertools import repeat
from typing import Any, Dict, Iterable, Iterator, Union

import numpy as np
import torch

__all__ = ["SyntheticRecords"]

# Stems are file names: on Linux a name that is not valid UTF-8 comes from os.listdir with lone surrogates
# (surrogateescape); "surrogatepass" encodes and decodes those too, so every str round-trips unchanged.
_ERRORS = "surrogatepass"


def _shared(values: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """A copy of ``values`` in a tensor allocated in shared memory, then filled (one copy at a time)."""
    tensor = torch.empty(values.shape, dtype=dtype).share_memory_()
    tensor.numpy()[...] = values
    return tensor


class SyntheticRecords(Sequence):
    """A read-only sequence of the records of a synthetic split, in the given stem order.

    ``records[i]`` is a new dict ``{"file_name", "sem_seg_file_name", "reduce_zero_label", "real_stem", "seed"}``,
    in that key order, as ``load_synthetic`` builds it; negative indices and ``IndexError`` behave as for a list, a
    slice gives a list. Pickling through ``multiprocessing`` passes handles to the shared memory; a plain
    ``pickle.dumps`` copies the bytes.
    """

    def __init__(
        self,
        stems: Sequence[str],
        real_stems: Iterable[str],
        seed_mark: str,
        image_prefix: str,
        mask_prefix: str,
        image_ext: str,
        mask_ext: str,
        reduce_zero_label: Any,
    ) -> None:
        """``stems[i]`` is ``real_stems[i] + seed_mark + <decimal seed>``, an image's name less ``image_ext``; its
        files are ``image_prefix + stem + image_ext`` and ``mask_prefix + stem + mask_ext``."""
        encoded = list(map(str.encode, stems, repeat("utf-8"), repeat(_ERRORS)))
        ends = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)).cumsum()
        self._stems = _shared(np.frombuffer(b"".join(encoded), dtype=np.uint8), torch.uint8)
        del encoded
        self._offsets = _shared(np.concatenate(([0], ends)), torch.int64)
        lengths = np.fromiter(map(len, real_stems), dtype=np.int64, count=len(stems))
        self._real_lengths = _shared(lengths, torch.int64)
        self._constants = (len(seed_mark), image_prefix, mask_prefix, image_ext, mask_ext, reduce_zero_label)
        self._make_views()

    def _make_views(self) -> None:
        """Numpy views of the tensors (rebuilt after unpickling, never pickled: a numpy array would be copied)."""
        self._bytes = self._stems.numpy()
        self._ends = self._offsets.numpy()
        self._lengths = self._real_lengths.numpy()

    def __getstate__(self) -> Dict[str, Any]:
        return {
            "stems": self._stems,
            "offsets": self._offsets,
            "real_lengths": self._real_lengths,
            "constants": self._constants,
        }

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self._stems, self._offsets = state["stems"], state["offsets"]
        self._real_lengths, self._constants = state["real_lengths"], state["constants"]
        self._make_views()

    def __len__(self) -> int:
        return len(self._ends) - 1

    def stem(self, index: int) -> str:
        """The image name less its extension of record ``index`` (non-negative, in range)."""
        start, end = int(self._ends[index]), int(self._ends[index + 1])
        return self._bytes[start:end].tobytes().decode("utf-8", _ERRORS)

    def __getitem__(self, index: Union[int, slice]) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        i = operator.index(index)
        size = len(self)
        if i < 0:
            i += size
        if not 0 <= i < size:
            raise IndexError(f"record index {index} out of range for {size} records")
        mark, image_prefix, mask_prefix, image_ext, mask_ext, reduce_zero_label = self._constants
        stem = self.stem(i)
        real_length = int(self._lengths[i])
        return {
            "file_name": image_prefix + stem + image_ext,
            "sem_seg_file_name": mask_prefix + stem + mask_ext,
            "reduce_zero_label": reduce_zero_label,
            "real_stem": stem[:real_length],
            "seed": int(stem[real_length + mark :]),
        }

    def __iter__(self) -> Iterator[dict]:
        return map(self.__getitem__, range(len(self)))

    @property
    def nbytes(self) -> int:
        """Bytes of shared memory held: the joined stems, their offsets and the real stems' lengths."""
        return sum(t.numel() * t.element_size() for t in (self._stems, self._offsets, self._real_lengths))

    def __repr__(self) -> str:
        return f"SyntheticRecords({len(self)} records, {self.nbytes / 2**20:.1f} MiB)"
