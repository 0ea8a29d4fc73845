"""Dataset records held once per process in shared memory, read by every DataLoader worker without a copy.

Why: a Python list of dicts handed to a DataLoader is pickled whole into every worker started by ``forkserver`` or
``spawn`` (0.5-0.7 GB per worker for FreeMask's 400k-800k synthetic records), and under ``fork`` the workers' reads
touch the reference counts of every object, so the pages get copied anyway. Here the records are pickled one by one
into a single uint8 tensor, with an int64 tensor of offsets, both moved to shared memory: under ``fork`` the workers
map the same pages; under ``forkserver`` and ``spawn`` torch's reductions for ``multiprocessing`` (registered when
torch is imported) send a handle to the shared memory, not the bytes. A worker creates Python objects only for the
records it reads. This is the design of ``facebookresearch/detectron2, detectron2/data/common.py,
_TorchSerializedList``; the encoding below is smaller:

- dicts are stored as their values plus the index of their key tuple in a table shared by all records (records of a
  dataset share a handful of key tuples: the top-level keys, ``segments_info`` entries, annotations);
- strings holding a ``/`` are stored as the index of their folder (up to the last ``/``) in a shared folder table
  plus the rest (a dataset has a few folders and hundreds of thousands of files);
- each record's pickle is written without memo opcodes and without its protocol and frame header.

Both tables are bounded (:data:`MAX_FOLDERS`, :data:`MAX_SCHEMAS`): past the bound, strings and dicts are pickled
whole, so a worker's copy of the tables never grows with the number of records. Decoding gives back a new dict equal
to the original (same key order, same types: a ``str`` or ``dict`` subclass is pickled as it is).
"""

import io
import logging
import operator
import pickle
from array import array
from collections.abc import Sequence
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple, Union

import numpy as np
import torch

__all__ = ["RecordBuffer", "MAX_FOLDERS", "MAX_SCHEMAS"]

logger = logging.getLogger(__name__)

MAX_FOLDERS = 4096
MAX_SCHEMAS = 1024
_PROTOCOL = 4  # short strings cost 2 bytes of header (SHORT_BINUNICODE), against 5 with protocol 3
_PROTO_HEADER = 2  # PROTO opcode and its argument
_FRAME_HEADER = 9  # FRAME opcode and its 8-byte length, written by protocol 4 before any pickle of 4+ bytes


class _Tables:
    """The folder and key-tuple tables of one buffer while it is being built (value -> index)."""

    def __init__(self) -> None:
        self.folders: Dict[str, int] = {}
        self.schemas: Dict[Tuple[Any, ...], int] = {}

    def folder(self, text: str) -> Optional[int]:
        index = self.folders.get(text)
        if index is None and len(self.folders) < MAX_FOLDERS:
            index = self.folders[text] = len(self.folders)
        return index

    def schema(self, keys: Tuple[Any, ...]) -> Optional[int]:
        index = self.schemas.get(keys)
        if index is None and len(self.schemas) < MAX_SCHEMAS:
            index = self.schemas[keys] = len(self.schemas)
        return index


class _Encoder(pickle.Pickler):
    """Pickler replacing dicts by ``(schema, *values)`` and folder paths by ``(~folder, rest)`` persistent ids (the
    elements of a persistent id are pickled through this method too, so nested dicts and paths are encoded). One
    encoder writes every record of a buffer: a new pickler per record doubles the time to build."""

    def __init__(self, tables: _Tables) -> None:
        self._out = io.BytesIO()
        super().__init__(self._out, protocol=_PROTOCOL)
        self.fast = True  # no memo: records are trees, and memo opcodes would cost 1-2 bytes per string
        self.tables = tables

    def persistent_id(self, obj: Any) -> Optional[tuple]:
        kind = type(obj)
        if kind is str:
            cut = obj.rfind("/") + 1
            if cut:
                folder = self.tables.folder(obj[:cut])
                if folder is not None:
                    return (~folder, obj[cut:])
        elif kind is dict:
            schema = self.tables.schema(tuple(obj))
            if schema is not None:
                return (schema, *obj.values())
        return None

    def write(self, record: Any, into: bytearray) -> None:
        """Append the pickle of ``record`` to ``into``, less its protocol and frame header (the unpickler needs
        neither)."""
        self._out.seek(0)
        self._out.truncate()
        self.dump(record)
        with self._out.getbuffer() as data:
            start = _PROTO_HEADER + (_FRAME_HEADER if data[_PROTO_HEADER] == pickle.FRAME[0] else 0)
            into += data[start:]


class _Decoder(pickle.Unpickler):
    """Unpickler undoing :class:`_Encoder`'s persistent ids with the buffer's tables."""

    def __init__(self, data: memoryview, folders: List[str], schemas: List[Tuple[Any, ...]]) -> None:
        super().__init__(io.BytesIO(data))
        self.folders = folders
        self.schemas = schemas

    def persistent_load(self, pid: tuple) -> Any:
        head = pid[0]
        if head < 0:
            return self.folders[~head] + pid[1]
        return dict(zip(self.schemas[head], pid[1:]))


class RecordBuffer(Sequence):
    """A read-only sequence of record dicts stored in two shared-memory tensors (see the module docstring).

    ``buffer[i]`` is a new dict equal to ``records[i]``; negative indices and ``IndexError`` behave as for a list,
    a slice gives a list. Pickling through ``multiprocessing`` (what DataLoader workers receive) passes handles to
    the shared memory; a plain ``pickle.dumps`` copies the bytes.
    """

    def __init__(self, records: Iterable[dict]) -> None:
        tables = _Tables()
        encoder = _Encoder(tables)
        data = bytearray()
        ends = array("q")
        for record in records:
            encoder.write(record, data)
            ends.append(len(data))
        self._data = torch.frombuffer(data, dtype=torch.uint8).clone() if data else torch.empty(0, dtype=torch.uint8)
        self._offsets = torch.from_numpy(np.concatenate([[0], np.frombuffer(ends, dtype=np.int64)]).astype(np.int64))
        self._data.share_memory_()
        self._offsets.share_memory_()
        self._folders = list(tables.folders)
        self._schemas = list(tables.schemas)
        self._make_views()

    def _make_views(self) -> None:
        """Numpy views of the tensors (rebuilt after unpickling, never pickled: a numpy array would be copied)."""
        self._bytes = memoryview(self._data.numpy())
        self._ends = self._offsets.numpy()

    def __getstate__(self) -> Dict[str, Any]:
        return {"data": self._data, "offsets": self._offsets, "folders": self._folders, "schemas": self._schemas}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self._data, self._offsets = state["data"], state["offsets"]
        self._folders, self._schemas = state["folders"], state["schemas"]
        self._make_views()

    def __len__(self) -> int:
        return len(self._ends) - 1

    def __getitem__(self, index: Union[int, slice]) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        i = operator.index(index)
        size = len(self)
        if i < 0:
            i += size
        if not 0 <= i < size:
            raise IndexError(f"record index {index} out of range for {size} records")
        start, end = int(self._ends[i]), int(self._ends[i + 1])
        return _Decoder(self._bytes[start:end], self._folders, self._schemas).load()

    def __iter__(self) -> Iterator[dict]:
        """The records in order, read by one unpickler from the whole buffer (the pickles follow each other; one
        per record costs a few times more)."""
        decoder = _Decoder(self._bytes, self._folders, self._schemas)
        for _ in range(len(self)):
            yield decoder.load()

    @property
    def nbytes(self) -> int:
        """Bytes of shared memory held: the encoded records and their offsets (the tables are bounded and small)."""
        return self._data.numel() + self._offsets.numel() * self._offsets.element_size()

    def __repr__(self) -> str:
        return f"RecordBuffer({len(self)} records, {self.nbytes / 2**20:.1f} MiB)"
