"""Reading image/mask pairs for the filter, and grouping them into batches that every rank agrees on.

Whole-image inference at full resolution pads a batch to its largest image, and padding changes the predictions near
the bottom/right border a little. So that a file's result never depends on which other files shared its batch, the
batches are planned once from the whole file list (never from a rank's share or from what is left to do): ranks take
whole batches in turn, and a resumed run recomputes a batch with the same companions. Planning sorts by size, so
same-sized images (most synthetic sets) share batches without any padding.
"""

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from ...commands import hint
from ...data.errors import DatasetError
from ...data.loading.loader_start import loader_context
from ...data.loading.record_buffer import RecordBuffer
from ...data.mappers.semantic import read_image, read_mask, reduce_zero_label
from ...utils import comm
from .windowed import windowed_map

Size = Tuple[int, int]
_FIX = f"fix or remove the pair ({hint('check-dataset')} lists every problem)"


def training_labels(raw_mask: np.ndarray, reduce_zero: bool, ignore_label: int) -> np.ndarray:
    """Int64 training labels (``0..K-1`` or ``ignore_label``) of a mask as stored."""
    labels = reduce_zero_label(raw_mask, ignore_label) if reduce_zero else raw_mask
    return labels.astype(np.int64)


def check_labels(labels: np.ndarray, num_classes: int, ignore_label: int, path: str) -> None:
    """DatasetError naming ``path`` when a label is neither a model class nor the ignore label."""
    bad = labels[(labels >= num_classes) & (labels != ignore_label)]
    if bad.size:
        raise DatasetError(
            f"{path}: label {int(bad.max())} but the model has {num_classes} classes (0..{num_classes - 1}, ignore "
            f"{ignore_label}); use a model trained on this dataset, or check the mask encoding "
            f"(raw ADE20K-style masks need --reduce-zero-label)"
        )


class PairReader(torch.utils.data.Dataset):
    """Item ``i``: ``{"index", "image": uint8 (3, H, W) RGB, "labels": int64 (H, W)}`` plus ``"raw"`` (the mask as
    stored) when ``keep_raw``. A bad pair yields ``{"index", "error": message}`` instead of raising, so the message
    reaches the user as one line rather than wrapped in a DataLoader worker's traceback."""

    def __init__(self, records: Sequence[dict], num_classes: int, ignore_label: int, keep_raw: bool) -> None:
        self.records = records
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.keep_raw = keep_raw

    def __len__(self) -> int:
        return len(self.records)

    def shared(self) -> "PairReader":
        """The same reader with its records in a :class:`~freemask.data.loading.record_buffer.RecordBuffer`, for loader
        workers: they map one shared copy instead of each receiving (or, forked, gradually copying) the list."""
        if isinstance(self.records, RecordBuffer):
            return self
        return PairReader(RecordBuffer(self.records), self.num_classes, self.ignore_label, self.keep_raw)

    def __getitem__(self, index: int) -> Dict:
        record = self.records[index]
        try:
            image = read_image(record["file_name"])
            raw = read_mask(record["sem_seg_file_name"])
            if raw.shape != image.shape[:2]:
                raise DatasetError(
                    f"{record['sem_seg_file_name']}: mask is {raw.shape[1]}x{raw.shape[0]} but its image "
                    f"{record['file_name']} is {image.shape[1]}x{image.shape[0]} (WxH); {_FIX}"
                )
            labels = training_labels(raw, record.get("reduce_zero_label", False), self.ignore_label)
            check_labels(labels, self.num_classes, self.ignore_label, record["sem_seg_file_name"])
        except DatasetError as e:
            return {"index": index, "error": str(e)}
        item = {
            "index": index,
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "labels": torch.from_numpy(labels),
        }
        if self.keep_raw:
            item["raw"] = raw
        return item


def _header_size(path: str) -> Size:
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path}: cannot read the image header ({e}); {_FIX}") from None
    return height, width


def image_sizes(paths: Sequence[str], threads: int = 8) -> List[Size]:
    """(H, W) of every image from its header, the reading shared between ranks (each reads a slice, a bounded
    window of headers in flight at a time)."""
    rank, world = comm.get_rank(), comm.get_world_size()
    mine = list(windowed_map(_header_size, paths[rank::world], threads))
    slices = comm.all_gather(mine)
    sizes: List[Optional[Size]] = [None] * len(paths)
    for r, part in enumerate(slices):
        sizes[r::world] = part
    return sizes  # type: ignore[return-value]


def plan_batches(sizes: Sequence[Size], batch_size: int, max_padding: float = 0.25) -> List[List[int]]:
    """Indices grouped into batches: sorted by (H, W, index), a batch closes when it holds ``batch_size`` images,
    when its padded area would exceed ``batch_size`` times the median image area (bounds memory on the odd huge
    image), or when padding would add more than ``max_padding`` of its pixels. A pure function of its arguments."""
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    if not sizes:
        return []
    budget = batch_size * float(np.median([h * w for h, w in sizes]))
    batches: List[List[int]] = []
    current: List[int] = []
    height = width = area = 0
    for index in sorted(range(len(sizes)), key=lambda i: (sizes[i][0], sizes[i][1], i)):
        h, w = sizes[index]
        new_h, new_w, new_area = max(height, h), max(width, w), area + h * w
        padded = new_h * new_w * (len(current) + 1)
        if current and (len(current) == batch_size or padded > budget or padded > (1 + max_padding) * new_area):
            batches.append(current)
            current, new_h, new_w, new_area = [], h, w, h * w
        current.append(index)
        height, width, area = new_h, new_w, new_area
    batches.append(current)
    return batches


def collate(items: List[Dict]) -> List[Dict]:
    """Keep a batch as a list of items (sizes differ; padding happens on the device)."""
    return items


def make_loader(
    reader: PairReader, batches: List[List[int]], num_workers: int, pin_memory: bool, start_method: str = ""
) -> torch.utils.data.DataLoader:
    """A DataLoader yielding this rank's batches (lists of items) in order; its workers, if any, read the records
    from shared memory (:meth:`PairReader.shared`) and are started by ``start_method`` ("" =
    :data:`freemask.data.loading.loader_start.DEFAULT_START_METHOD`)."""
    return torch.utils.data.DataLoader(
        reader.shared() if num_workers > 0 else reader,
        batch_sampler=batches,
        num_workers=num_workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        persistent_workers=False,
        multiprocessing_context=loader_context(start_method, num_workers, "Filter"),
    )
