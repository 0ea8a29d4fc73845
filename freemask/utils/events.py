"""Training metrics: collected per iteration, written to metrics.json, TensorBoard and the console; images (the
evaluation panels) go to TensorBoard only."""

import datetime
import json
import logging
import os
import statistics
from collections import defaultdict, deque
from typing import Deque, Dict, List, Optional, Tuple

import numpy as np

logger = logging.getLogger(__name__)


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


class JSONWriter:
    """Appends one JSON object per logged iteration to ``metrics.json`` (detectron2's format)."""

    def __init__(self, path: str) -> None:
        self._file = open(path, "a")

    def write(self, storage: MetricStorage) -> None:
        self._file.write(json.dumps({"iteration": storage.iter, **storage.latest()}, sort_keys=True) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class TensorboardWriter:
    """Scalars and images as TensorBoard events under ``OUTPUT_DIR``."""

    def __init__(self, log_dir: str) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(log_dir)

    def write(self, storage: MetricStorage) -> None:
        for name, value in storage.latest().items():
            self._writer.add_scalar(name, value, storage.iter)
        for name, image in storage.images():
            self._writer.add_image(name, image, storage.iter, dataformats="HWC")
        self._writer.flush()

    def close(self) -> None:
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
        JSONWriter(os.path.join(output_dir, "metrics.json")),
        TensorboardWriter(output_dir),
    ]
