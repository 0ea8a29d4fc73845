"""Training metrics: collected per iteration, written to metrics.json, TensorBoard and the console; images (the
evaluation panels) go to TensorBoard only.

A write the file system refuses (full, over quota, read-only) raises :class:`~freemask.errors.OutputWriteError`
naming the file, as every other output of the project.
"""

import contextlib
import datetime
import json
import logging
import os
import statistics
from collections import defaultdict, deque
from typing import Deque, Dict, Iterator, List, Optional, Tuple

import numpy as np

from ..errors import UserError, file_system_refusal, output_write_error

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"


class MetricStorage:
    """Scalars of recent iterations; writers read the latest value or the median over a window. Images put since
    the last write are kept until then, as detectron2's ``EventStorage.put_image``."""

    def __init__(self, window: int = 20) -> None:
        self.iter = 0
        self._history: Dict[str, Deque[float]] = defaultdict(lambda: deque(maxlen=window))
        self._latest: Dict[str, float] = {}
        self._images: List[Tuple[str, np.ndarray]] = []

    def put_scalars(self, **scalars: float) -> None:
        for name, value in scalars.items():
            value = float(value)
            self._history[name].append(value)
            self._latest[name] = value

    def put_image(self, name: str, image: np.ndarray) -> None:
        """An RGB ``(H, W, 3)`` uint8 image to show under ``name`` at this iteration."""
        self._images.append((name, image))

    def images(self) -> List[Tuple[str, np.ndarray]]:
        return list(self._images)

    def latest(self) -> Dict[str, float]:
        """Values put since the last :meth:`clear`, so each one is written once."""
        return dict(self._latest)

    def clear(self) -> None:
        self._latest.clear()
        self._images.clear()

    def median(self, name: str) -> Optional[float]:
        values = self._history.get(name)
        return statistics.median(values) if values else None


@contextlib.contextmanager
def _named_write_errors(path: str) -> Iterator[None]:
    """An OS write failure of the file system (full, read-only) inside the block as OutputWriteError naming ``path``."""
    try:
        yield
    except Exception as e:
        refused = None if isinstance(e, UserError) else file_system_refusal(e)
        if refused is None:
            raise
        intact = "what was written to it before is intact"
        raise output_write_error(refused, refused.filename or path, intact=intact) from None


class JSONWriter:
    """Appends one JSON object per logged iteration to ``metrics.json`` (detectron2's format).

    A resumed run appends after the lines of the earlier one; a last line cut short by a kill is removed first, so
    the new lines do not continue it (which would make it, and the first new one, unreadable)."""

    def __init__(self, path: str) -> None:
        self.path = path
        with _named_write_errors(path):
            drop_incomplete_last_line(path)
            self._file = open(path, "a")

    def write(self, storage: MetricStorage) -> None:
        with _named_write_errors(self.path):
            self._file.write(json.dumps({"iteration": storage.iter, **storage.latest()}, sort_keys=True) + "\n")
            self._file.flush()

    def close(self) -> None:
        with _named_write_errors(self.path):
            self._file.close()


def drop_incomplete_last_line(path: str) -> None:
    """Truncate ``path`` after its last newline (a line a killed writer left unfinished); a missing file is fine."""
    if not os.path.isfile(path):
        return
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        # Read back from the end in blocks until the last newline (the tail is at most one line).
        end = size
        while end > 0:
            start = max(0, end - 65536)
            f.seek(start)
            block = f.read(end - start)
            newline = block.rfind(b"\n")
            if newline >= 0:
                f.truncate(start + newline + 1)
                return
            end = start
        f.truncate(0)


def last_written_iteration(path: str) -> int:
    """The ``iteration`` of the last complete line of a metrics.json (-1 when it has none, or does not exist)."""
    if not os.path.isfile(path):
        return -1
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")[:-1]  # the part after the last newline is not a complete line
    for line in reversed(lines):
        try:
            return int(json.loads(line)["iteration"])
        except (ValueError, KeyError, TypeError):
            continue
    return -1


class TensorboardWriter:
    """Scalars and images as TensorBoard events under ``OUTPUT_DIR``."""

    def __init__(self, log_dir: str) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.path = os.path.join(log_dir, "events.out.tfevents.*")  # names the file in error messages
        with _named_write_errors(self.path):
            self._writer = SummaryWriter(log_dir)

    def write(self, storage: MetricStorage) -> None:
        # The events are written by a thread of the SummaryWriter; its write error comes back here, at flush.
        with _named_write_errors(self.path):
            for name, value in storage.latest().items():
                self._writer.add_scalar(name, value, storage.iter)
            for name, image in storage.images():
                self._writer.add_image(name, image, storage.iter, dataformats="HWC")
            self._writer.flush()

    def close(self) -> None:
        with _named_write_errors(self.path):
            self._writer.close()


class ConsolePrinter:
    """One console line per logged iteration: ETA, iteration, losses (window medians), timing, lr, peak memory."""

    def __init__(self, max_iter: int) -> None:
        self.max_iter = max_iter

    def write(self, storage: MetricStorage) -> None:
        latest = storage.latest()
        if "time" not in latest:
            return
        iter_time = storage.median("time")
        data_time = storage.median("data_time")
        eta = f"eta: {datetime.timedelta(seconds=int(iter_time * (self.max_iter - storage.iter - 1)))}  "
        losses = "  ".join(
            f"{k}: {storage.median(k):.4g}" for k in sorted(latest) if k.startswith("loss") or k == "total_loss"
        )
        timing = f"time: {iter_time:.4f}  data_time: {data_time:.4f}  "
        memory = f"  max_mem: {latest['max_mem_mb']:.0f}M" if "max_mem_mb" in latest else ""
        logger.info(f"{eta}iter: {storage.iter}  {losses}  {timing}lr: {latest.get('lr', 0):.6g}{memory}")

    def close(self) -> None:
        pass


def default_writers(output_dir: str, max_iter: int) -> list:
    os.makedirs(output_dir, exist_ok=True)
    return [
        ConsolePrinter(max_iter),
        JSONWriter(os.path.join(output_dir, METRICS_FILE)),
        TensorboardWriter(output_dir),
    ]
