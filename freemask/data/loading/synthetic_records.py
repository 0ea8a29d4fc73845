"""The records of one synthetic split as two shared-memory tensors of file stems, built without a dict per pair.

Why: a synthetic split's record is a function of its image's stem (``<real_stem>_seed_<int>``) and of constants of
the split (folders, extensions, ``reduce_zero_label``). COCO-Synthetic has 710k pairs: building their dicts (1.1 s)
and then encoding them into a :class:`~.record_buffer.RecordBuffer` (2.6 s) is most of a training rank's start-up.
Here the sorted stems are joined with NUL separators and UTF-8 encoded in one call each, and their offsets are the
positions of the NUL bytes (one vectorised scan; no file name holds a NUL): 0.1 s for 710k stems, where touching each
stem from Python (its length, its encoding) cost 0.6 s. A record dict is made only when a loader worker reads it. As
in RecordBuffer, both tensors live in shared memory, so pickling through ``multiprocessing`` (DataLoader workers
under ``forkserver`` and ``spawn``) sends handles.

The real stem and the seed are split from the stem at each read, by the listing's rule (``parse_synthetic_stem``:
the text before the last ``_seed_``, and ``int()`` of the digits after it): the values the listing parsed, for seeds
of any size (an int64 column would overflow past 2**63), with no column to build.
"""

from typing import Any, Dict, Iterable, Iterator

import numpy as np
import torch

from .shared_records import SharedRecords, shared_copy

__all__ = ["SyntheticRecords"]

# Stems are file names: on Linux a name that is not valid UTF-8 comes from os.listdir with lone surrogates
# (surrogateescape); "surrogatepass" encodes and decodes those too, so every str round-trips unchanged.
_ERRORS = "surrogatepass"
_SEPARATOR = "\0"  # the one character no file name holds (POSIX and Windows)


class SyntheticRecords(SharedRecords):
    """A read-only sequence of the records of a synthetic split, in the given stem order.

    ``records[i]`` is a new dict ``{"file_name", "sem_seg_file_name", "reduce_zero_label", "real_stem", "seed"}``,
    in that key order, as ``load_synthetic`` builds it; negative indices and ``IndexError`` behave as for a list, a
    slice gives a list. Pickling through ``multiprocessing`` passes handles to the shared memory; a plain
    ``pickle.dumps`` copies the bytes.
    """

    def __init__(
        self,
        stems: Iterable[str],
        seed_mark: str,
        image_prefix: str,
        mask_prefix: str,
        image_ext: str,
        mask_ext: str,
        reduce_zero_label: Any,
    ) -> None:
        """Each of ``stems`` is ``<real_stem><seed_mark><decimal seed>`` whose last ``seed_mark`` is the one before
        the seed (an image's name less ``image_ext``); its files are ``image_prefix + stem + image_ext`` and
        ``mask_prefix + stem + mask_ext``."""
        stems = list(stems)
        # Each stem followed by a separator; stem i is the bytes between separators i - 1 and i, so the offsets are -1
        # and the separators' positions.
        joined = np.frombuffer(_SEPARATOR.join(stems + [""]).encode("utf-8", _ERRORS), dtype=np.uint8)
        ends = np.flatnonzero(joined == ord(_SEPARATOR))
        if len(ends) != len(stems):
            bad = next(stem for stem in stems if _SEPARATOR in stem)
            raise ValueError(f"stem {bad!r} holds a NUL character, which no file name can hold")
        self._stems = shared_copy(joined, torch.uint8)
        del joined
        self._offsets = shared_copy(np.concatenate(([-1], ends)), torch.int64)
        self._constants = (seed_mark, image_prefix, mask_prefix, image_ext, mask_ext, reduce_zero_label)
        self._make_views()

    def _make_views(self) -> None:
        """Numpy views of the tensors (rebuilt after unpickling, never pickled: a numpy array would be copied)."""
        self._bytes = self._stems.numpy()
        self._ends = self._offsets.numpy()

    def __getstate__(self) -> Dict[str, Any]:
        return {"stems": self._stems, "offsets": self._offsets, "constants": self._constants}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self._stems, self._offsets, self._constants = state["stems"], state["offsets"], state["constants"]
        self._make_views()

    def __len__(self) -> int:
        return len(self._ends) - 1

    def stem(self, index: int) -> str:
        """The image name less its extension of record ``index`` (non-negative, in range)."""
        start, end = int(self._ends[index]) + 1, int(self._ends[index + 1])
        return self._bytes[start:end].tobytes().decode("utf-8", _ERRORS)

    def _record(self, index: int) -> Any:
        mark, image_prefix, mask_prefix, image_ext, mask_ext, reduce_zero_label = self._constants
        stem = self.stem(index)
        real_stem, _, seed = stem.rpartition(mark)
        return {
            "file_name": image_prefix + stem + image_ext,
            "sem_seg_file_name": mask_prefix + stem + mask_ext,
            "reduce_zero_label": reduce_zero_label,
            "real_stem": real_stem,
            "seed": int(seed),
        }

    def __iter__(self) -> Iterator[dict]:
        return map(self.__getitem__, range(len(self)))

    @property
    def nbytes(self) -> int:
        """Bytes of shared memory held: the joined stems and their offsets."""
        return self._stems.numel() + self._offsets.numel() * self._offsets.element_size()

    def __repr__(self) -> str:
        return f"SyntheticRecords({len(self)} records, {self.nbytes / 2**20:.1f} MiB)"
