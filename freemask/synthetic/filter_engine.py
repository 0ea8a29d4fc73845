"""The two passes of the FreeMask filter on batches: class-wise mean loss over real pairs, then filtering of the
synthetic masks, each rank taking every ``world_size``-th planned batch.

Where the release ran one image at a time in float32 with one loader worker and saved each mask before reading the
next image, this engine batches same-sized images, runs under autocast on GPU, decodes with several loader workers
and encodes/saves masks on a thread pool while the model works on the next batch.
"""

import collections
import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Deque, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..checkpoint import load_trained_model
from ..config import CfgNode
from ..data.errors import DatasetError
from ..utils import comm
from .class_loss import ClassLoss
from .filter_data import PairReader, make_loader, mask_file_name
from .filter_inputs import MaskSource
from .filter_output import write_png
from .filter_records import RecordLog, image_record
from .filtering import apply_filter, filled_value, noisy_pixels
from .loss_stats import ClassLossAccumulator, pixel_cross_entropy


def load_filter_model(cfg: CfgNode) -> torch.nn.Module:
    """The model of ``cfg`` with ``MODEL.WEIGHTS`` loaded strictly, in eval mode."""
    return load_trained_model(cfg, "no MODEL.WEIGHTS given; the filter needs a model trained on the real images")


class BatchLoss:
    """Per-pixel cross-entropy of a batch of items from :class:`PairReader`, at each image's full resolution.

    Images are normalised on the device and padded bottom/right with 0 (the mean) to the batch's largest size,
    rounded up to the model's test-time size divisibility; labels are padded with the ignore label so padding never
    counts.
    """

    def __init__(self, model: torch.nn.Module, amp_dtype: Optional[torch.dtype], bgr: bool = False) -> None:
        self.model = model
        self.amp_dtype = amp_dtype
        self.bgr = bgr
        self.device = model.pixel_mean.device

    @torch.no_grad()
    def __call__(self, items: Sequence[Dict], ignore_label: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Loss and labels ``(N, H, W)`` on the device, (H, W) the largest item size; 0 loss at ignored pixels."""
        height = max(x["image"].shape[-2] for x in items)
        width = max(x["image"].shape[-1] for x in items)
        # The official filter runs the model as at test time, on the whole image: so the model's test-time padding
        # (TEST.SIZE_DIVISIBILITY, 0 for SegFormer as MMSegmentation), not the training batches' INPUT.SIZE_DIVISIBILITY
        # (the 512 crop in most ADE20K configs), which would change every prediction of a 512x683 image.
        divisor = max(int(self.model.inference.size_divisibility), 1)
        padded_h, padded_w = -(-height // divisor) * divisor, -(-width // divisor) * divisor
        images, labels = [], []
        for item in items:
            image = item["image"].to(self.device, non_blocking=True)
            image = (image.flip(0) if self.bgr else image).float()
            image = (image - self.model.pixel_mean) / self.model.pixel_std
            h, w = image.shape[-2:]
            images.append(F.pad(image, (0, padded_w - w, 0, padded_h - h)))
            target = item["labels"].to(self.device, non_blocking=True)
            labels.append(F.pad(target, (0, width - w, 0, height - h), value=ignore_label))
        device_type = self.device.type
        with torch.autocast(device_type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            log_probs = self.model.predict_log_probs(torch.stack(images))
        label_batch = torch.stack(labels)
        return pixel_cross_entropy(log_probs[..., :height, :width], label_batch, ignore_label), label_batch


def _items(loader, progress: Optional[tqdm]) -> Iterator[List[Dict]]:
    """Batches of items, a bad pair turned into its one-line DatasetError."""
    for items in loader:
        for item in items:
            if "error" in item:
                raise DatasetError(item["error"])
        yield items
        if progress is not None:
            progress.update(len(items))


def _progress(total: int, desc: str, enabled: bool) -> Optional[tqdm]:
    if not (enabled and comm.is_main_process()):
        return None
    world = comm.get_world_size()
    label = f"{desc} (rank 0 of {world})" if world > 1 else desc
    return tqdm(total=total, desc=label, unit="img", dynamic_ncols=True, smoothing=0.05)


def compute_class_loss(
    batch_loss: BatchLoss,
    source: MaskSource,
    class_names: Sequence[str],
    batches: List[List[int]],
    num_workers: int,
    progress: bool = True,
) -> ClassLoss:
    """Pass 1: class-wise mean loss over ``source`` (every rank runs its share of ``batches``; sums are reduced)."""
    num_classes = len(class_names)
    reader = PairReader(source.records, num_classes, source.ignore_label, keep_raw=False)
    mine = batches[comm.get_rank() :: comm.get_world_size()]
    loader = make_loader(reader, mine, num_workers, pin_memory=batch_loss.device.type == "cuda")
    accumulator = ClassLossAccumulator(num_classes, batch_loss.device)
    bar = _progress(sum(len(b) for b in mine), "pass 1: real images", progress)
    for items in _items(loader, bar):
        loss, labels = batch_loss(items, source.ignore_label)
        accumulator.add(loss, labels, source.ignore_label)
    if bar is not None:
        bar.close()
    accumulator.all_reduce()
    return accumulator.to_class_loss(source.description, class_names, source.ignore_label)


class _MaskWriter:
    """Encodes and saves filtered masks on threads; a record is logged only once its mask is in place, in
    submission order. At most ``max_pending`` masks wait, bounding memory when the disk is slower than the model."""

    def __init__(self, log: RecordLog, threads: int, max_pending: int) -> None:
        self.log = log
        self.pool = ThreadPoolExecutor(max(threads, 1))
        self.pending: Deque[Future] = collections.deque()
        self.max_pending = max(max_pending, 1)

    def submit(self, task: Callable[[], dict]) -> None:
        self.pending.append(self.pool.submit(task))
        while len(self.pending) > self.max_pending or (self.pending and self.pending[0].done()):
            self.log.append(self.pending.popleft().result())

    def close(self) -> None:
        try:
            while self.pending:
                self.log.append(self.pending.popleft().result())
        finally:
            self.pool.shutdown(wait=True)
            self.log.close()


def _save_task(path: str, raw: np.ndarray, noisy: np.ndarray, labels: np.ndarray, fill: int, k: int, ignore: int):
    def run() -> dict:
        write_png(path, apply_filter(raw, noisy, fill))
        return image_record(os.path.basename(path), labels, noisy, k, ignore)

    return run


def filter_masks(
    batch_loss: BatchLoss,
    source: MaskSource,
    thresholds: torch.Tensor,
    output: str,
    batches: List[List[int]],
    done: Set[str],
    num_workers: int,
    writer_threads: int = 4,
    progress: bool = True,
) -> int:
    """Pass 2: write the filtered mask of every record of this rank's share of ``batches`` not in ``done`` (output
    file names), and log its record. Batches whose files are all done are skipped; a partly done batch is recomputed
    whole, so every file is computed with the same batch companions as in an uninterrupted run. Returns the number of
    masks written by this rank."""
    num_classes = len(thresholds)
    names = [mask_file_name(r) for r in source.records]
    todo = [b for b in batches if any(names[i] not in done for i in b)]
    mine = todo[comm.get_rank() :: comm.get_world_size()]
    reader = PairReader(source.records, num_classes, source.ignore_label, keep_raw=True)
    loader = make_loader(reader, mine, num_workers, pin_memory=batch_loss.device.type == "cuda")
    writer = _MaskWriter(
        RecordLog(output, comm.get_rank()), writer_threads, max_pending=4 * max((len(b) for b in batches), default=1)
    )
    bar = _progress(sum(len(b) for b in mine), "pass 2: synthetic images", progress)
    written = 0
    try:
        for items in _items(loader, bar):
            loss, labels = batch_loss(items, source.ignore_label)
            noisy = noisy_pixels(loss, labels, thresholds, source.ignore_label).cpu().numpy()
            for row, item in enumerate(items):
                name = names[item["index"]]
                if name in done:
                    continue
                record = source.records[item["index"]]
                h, w = item["raw"].shape
                fill = filled_value(record.get("reduce_zero_label", False), source.ignore_label)
                task = _save_task(
                    os.path.join(output, name),
                    item["raw"],
                    noisy[row, :h, :w],
                    item["labels"].numpy(),
                    fill,
                    num_classes,
                    source.ignore_label,
                )
                writer.submit(task)
                written += 1
    finally:
        writer.close()
        if bar is not None:
            bar.close()
    return written
