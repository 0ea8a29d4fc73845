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
- a flat record (a dict of strings, numbers, booleans and None: semantic and synthetic records, most of FreeMask's
  800k) is pickled as one tuple ``(shape, values...)``, each path as two values, its shape (keys and which values
  are paths) in a third table; other records go through a pickler whose persistent ids do the two replacements
  above at any depth (a Python call per object: a fifth slower to build, and 13% larger for flat records);
- each record's pickle is written without memo opcodes and without its protocol and frame header;
- consecutive flat records with the same keys (a dataset's records, in runs of thousands) are split into columns and
  encoded with C-level calls only, in the same bytes (1.5 us per record against 3.6 us one by one, issue 26).

The tables are bounded (:data:`MAX_FOLDERS`, :data:`MAX_SCHEMAS` key tuples and as many shapes): past the bound,
strings and dicts are pickled whole, so a worker's copy of the tables never grows with the number of records.
Decoding gives back a new dict equal to the original (same key order, same types: a ``str`` or ``dict`` subclass is
pickled as it is).
"""

import gc
import io
import logging
import operator
import pickle
from collections import deque
from itertools import groupby, islice, repeat
from types import SimpleNamespace
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple, Union

import numpy as np
import torch

from .shared_records import SharedRecords, shared_copy

__all__ = ["RecordBuffer", "MAX_FOLDERS", "MAX_SCHEMAS"]

logger = logging.getLogger(__name__)

MAX_FOLDERS = 4096
MAX_SCHEMAS = 1024
_PROTOCOL = 4  # short strings cost 2 bytes of header (SHORT_BINUNICODE), against 5 with protocol 3
_PROTO_HEADER = 2  # PROTO opcode and its argument
_FRAME_HEADER = 9  # FRAME opcode and its 8-byte length, written by protocol 4 before any pickle of 4+ bytes
_ATOMS = frozenset({str, int, bool, float, type(None)})
_CHUNK = 8192  # records encoded together: bounds the columns and pickles held at once while building
_MIN_RUN = 16  # shorter runs of same-keyed dicts are encoded one by one (a run costs a few records' time to set up)
Shape = Tuple[Tuple[Any, ...], Tuple[bool, ...]]  # a flat record's keys, and which of its values are paths


def _header_size(pickled: Union[bytes, memoryview]) -> int:
    """Bytes of protocol and frame header at the start of a protocol-4 pickle."""
    return _PROTO_HEADER + (_FRAME_HEADER if pickled[_PROTO_HEADER] == pickle.FRAME[0] else 0)


_frame_mark = operator.itemgetter(slice(_PROTO_HEADER, _PROTO_HEADER + 1))  # FRAME where a pickle has a frame


class _Tables:
    """The folder and key-tuple tables of one buffer while it is being built (value -> index)."""

    def __init__(self) -> None:
        self.folders: Dict[str, int] = {}
        self.schemas: Dict[Tuple[Any, ...], int] = {}
        self.shapes: Dict[Shape, int] = {}

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

    def shape(self, shape: Shape) -> Optional[int]:
        index = self.shapes.get(shape)
        if index is None and len(self.shapes) < MAX_SCHEMAS:
            index = self.shapes[shape] = len(self.shapes)
        return index

    def flat(self, record: dict) -> Optional[tuple]:
        """``(shape, values...)`` of a dict of atoms, each path as ``(folder, rest)``; None for any other record, or
        when a table is full."""
        values: List[Any] = []
        paths: List[bool] = []
        for value in record.values():
            kind = type(value)
            if kind not in _ATOMS:
                return None
            if kind is str:
                cut = value.rfind("/") + 1
                folder = self.folder(value[:cut]) if cut else None
                if folder is not None:
                    values += (folder, value[cut:])
                    paths.append(True)
                    continue
            values.append(value)
            paths.append(False)
        shape = self.shape((tuple(record), tuple(paths)))
        return None if shape is None else (shape, *values)


class _Encoder(pickle.Pickler):
    """Pickler replacing dicts by ``(schema, *values)`` and folder paths by ``(~folder, rest)`` persistent ids (the
    elements of a persistent id are pickled through this method too, so nested dicts and paths are encoded). One
    encoder writes every record of a buffer: a new pickler per record doubles the time to build."""

    def __init__(self, tables: _Tables) -> None:
        self._out = io.BytesIO()
        super().__init__(self._out, protocol=_PROTOCOL)
        # No memo: records are trees, memo opcodes would cost 1-2 bytes per string, and a memo reference would
        # point elsewhere when one unpickler reads the records one after the other (RecordBuffer.__iter__).
        self.fast = True
        self._flat = pickle.Pickler(self._out, protocol=_PROTOCOL)  # no persistent ids: a Python call per object
        self._flat.fast = True
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

    def write(self, record: Any) -> bytes:
        """The pickle of ``record``, less its protocol and frame header (the unpickler needs neither): a flat
        record's tuple, any other dict through the persistent ids, anything else in a list (so that neither a dict
        nor a tuple can be mistaken for it)."""
        flat = self.tables.flat(record) if type(record) is dict else None
        self._out.seek(0)
        self._out.truncate()
        if flat is not None:
            self._flat.dump(flat)
        else:
            self.dump(record if type(record) is dict else [record])
        with self._out.getbuffer() as data:
            return bytes(data[_header_size(data) :])


class _RunEncoder:
    """Encodes records a chunk at a time: each run of consecutive dicts with the same keys is split into columns and
    pickled with C-level calls only (``map``, ``zip``, one pickler's ``dump``), in the same bytes as
    :meth:`_Tables.flat` and :class:`_Encoder` give one record at a time (3.6 us per record, most of it in Python);
    records that are not flat, and runs where a column mixes paths and other values, go through :class:`_Encoder`.
    """

    def __init__(self) -> None:
        self.tables = _Tables()
        self._encoder = _Encoder(self.tables)
        self._pickles: List[bytes] = []  # what the pickler writes: one bytes per dump, unless a record exceeds a frame
        self._pickler = pickle.Pickler(SimpleNamespace(write=self._pickles.append), protocol=_PROTOCOL)
        self._pickler.fast = True  # no memo, as _Encoder

    def encode(self, chunk: List[Any]) -> List[bytes]:
        """The headerless pickles of ``chunk``'s records, in order."""
        if set(map(type, chunk)) == {dict}:
            keys: List[Any] = list(map(tuple, chunk))
        else:
            keys = [tuple(record) if type(record) is dict else None for record in chunk]
        pickles: List[bytes] = []
        start = 0
        for key, group in groupby(keys):
            run = chunk[start : start + len(list(group))]
            start += len(run)
            flat = self._flat_run(key, run) if key is not None and len(run) >= _MIN_RUN else None
            pickles += map(self._encoder.write, run) if flat is None else flat
        return pickles

    def _flat_run(self, keys: Tuple[Any, ...], run: List[dict]) -> Optional[List[bytes]]:
        """The headerless pickles of the tuples :meth:`_Tables.flat` gives for ``run`` (dicts with ``keys``), or None
        where a record needs its own shape or another encoding."""
        paths: List[bool] = []
        columns: List[Any] = []
        for column in zip(*map(dict.values, run)):
            kinds = set(map(type, column))
            if not kinds <= _ATOMS or (str in kinds and len(kinds) > 1):
                return None
            split = self._folder_split(column) if str in kinds else None
            if split is None:
                columns.append(column)
                paths.append(False)
            elif not split:
                return None
            else:
                columns += split
                paths.append(True)
        shape = self.tables.shape((keys, tuple(paths)))
        if shape is None:
            return None
        self._pickles.clear()
        deque(map(self._pickler.dump, zip(repeat(shape, len(run)), *columns)), maxlen=0)
        pickles = self._pickles
        # each dump wrote its protocol and frame header (2 + 9 bytes) and its pickle, in one call; a string past the
        # 64 kB frame size makes the pickler write more than once
        if len(pickles) != len(run) or b"".join(map(_frame_mark, pickles)).count(pickle.FRAME) != len(run):
            return None
        return list(map(operator.itemgetter(slice(_PROTO_HEADER + _FRAME_HEADER, None)), pickles))

    def _folder_split(self, column: Tuple[str, ...]) -> Optional[List[Any]]:
        """``[folder indices, rests]`` when every string of ``column`` is a path whose folder is in the table, None
        when none is, ``[]`` when some are (those records need their own shapes)."""
        folder = column[0][: column[0].rfind("/") + 1]
        rests = list(map(operator.itemgetter(slice(len(folder), None)), column))
        # One folder, the usual case (a dataset's images): the strings are folder + rest each, with no "/" in the rests,
        # if and only if their concatenation is that of folder + rest (joins, no Python call per string).
        if folder and "/" not in "".join(rests) and "".join(column) == folder + folder.join(rests):
            index = self.tables.folder(folder)
            return None if index is None else [repeat(index), rests]
        heads, slashes, rests = zip(*map(str.rpartition, column, repeat("/")))
        folders = list(map(operator.add, heads, slashes))
        index = {folder: self.tables.folder(folder) if folder else None for folder in dict.fromkeys(folders)}
        found = set(index.values())
        if None not in found:
            return [map(index.__getitem__, folders), rests]
        return None if len(found) == 1 else []


class _Decoder(pickle.Unpickler):
    """Unpickler of :class:`_Encoder`'s records, with the buffer's tables."""

    def __init__(self, data: memoryview, tables: Tuple[List[str], List[Tuple[Any, ...]], List[Shape]]) -> None:
        super().__init__(io.BytesIO(data))
        self.folders, self.schemas, self.shapes = tables

    def persistent_load(self, pid: tuple) -> Any:
        head = pid[0]
        if head < 0:
            return self.folders[~head] + pid[1]
        return dict(zip(self.schemas[head], pid[1:]))

    def record(self) -> Any:
        """The next record of the stream."""
        stored = self.load()
        kind = type(stored)
        if kind is list:
            return stored[0]
        if kind is not tuple:
            return stored
        keys, paths = self.shapes[stored[0]]
        record = {}
        i = 1
        for key, is_path in zip(keys, paths):
            if is_path:
                record[key] = self.folders[stored[i]] + stored[i + 1]
                i += 2
            else:
                record[key] = stored[i]
                i += 1
        return record


class RecordBuffer(SharedRecords):
    """A read-only sequence of record dicts stored in two shared-memory tensors (see the module docstring).

    ``buffer[i]`` is a new dict equal to ``records[i]``; negative indices and ``IndexError`` behave as for a list,
    a slice gives a list. Pickling through ``multiprocessing`` (what DataLoader workers receive) passes handles to
    the shared memory; a plain ``pickle.dumps`` copies the bytes.
    """

    def __init__(self, records: Iterable[dict]) -> None:
        encoder = _RunEncoder()
        data = bytearray()
        ends = [np.zeros(1, dtype=np.int64)]
        remaining = iter(records)
        # A chunk's columns and pickles are thousands of containers alive at once: each chunk would start cyclic
        # garbage collections that walk every object of the process (the caller's records: 5x the build's time).
        collecting = gc.isenabled()
        gc.disable()
        try:
            while chunk := list(islice(remaining, _CHUNK)):
                pickles = encoder.encode(chunk)
                ends.append(np.cumsum(np.fromiter(map(len, pickles), dtype=np.int64, count=len(pickles))) + len(data))
                data += b"".join(pickles)
        finally:
            if collecting:
                gc.enable()
        self._data = shared_copy(np.frombuffer(data, dtype=np.uint8), torch.uint8)
        del data
        self._offsets = shared_copy(np.concatenate(ends), torch.int64)
        tables = encoder.tables
        self._tables = (list(tables.folders), list(tables.schemas), list(tables.shapes))
        self._make_views()

    def _make_views(self) -> None:
        """Numpy views of the tensors (rebuilt after unpickling, never pickled: a numpy array would be copied)."""
        self._bytes = memoryview(self._data.numpy())
        self._ends = self._offsets.numpy()

    def __getstate__(self) -> Dict[str, Any]:
        return {"data": self._data, "offsets": self._offsets, "tables": self._tables}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self._data, self._offsets, self._tables = state["data"], state["offsets"], state["tables"]
        self._make_views()

    def __len__(self) -> int:
        return len(self._ends) - 1

    def _record(self, index: int) -> Any:
        start, end = int(self._ends[index]), int(self._ends[index + 1])
        return _Decoder(self._bytes[start:end], self._tables).record()

    def __iter__(self) -> Iterator[dict]:
        """The records in order, read by one unpickler from the whole buffer (the pickles follow each other; one
        per record costs a few times more)."""
        decoder = _Decoder(self._bytes, self._tables)
        for _ in range(len(self)):
            yield decoder.record()

    @property
    def nbytes(self) -> int:
        """Bytes of shared memory held: the encoded records and their offsets (the tables are bounded and small)."""
        return self._data.numel() + self._offsets.numel() * self._offsets.element_size()

    def __repr__(self) -> str:
        return f"RecordBuffer({len(self)} records, {self.nbytes / 2**20:.1f} MiB)"
