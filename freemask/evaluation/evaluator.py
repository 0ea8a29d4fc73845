"""The evaluation loop: run a model over a test loader and feed an evaluator, with progress and timing in the log.

Kept apart from the metrics so any evaluator with ``reset / process / evaluate`` (detectron2's protocol) can be
driven by the same loop, on every rank, from the trainer's periodic evaluation and from ``--eval-only`` alike.
"""

import datetime
import logging
import time
from typing import Dict, Iterable, Optional

import torch
from torch import nn

from ..utils import comm

logger = logging.getLogger(__name__)


def inference_on_dataset(
    model: nn.Module, data_loader: Iterable[list], evaluator, log_period: int = 50
) -> Dict[str, Dict[str, float]]:
    """Evaluate ``model`` on this rank's share of ``data_loader``; returns ``evaluator.evaluate()``.

    The model runs in eval mode under ``torch.no_grad()``; its previous train/eval mode is restored afterwards, so
    periodic evaluation during training leaves batch-norm and dropout as they were. Every ``log_period`` images the
    log shows progress and an ETA; at the end, the total time and the time per image. The first few batches are
    left out of the per-image time (warm-up: cuDNN autotuning, lazy allocations, worker start).

    Args:
        model: takes a list of mapper dicts and returns a list of ``{"sem_seg": (C, H0, W0)}``.
        data_loader: yields lists of mapper dicts (the test loader: batch 1, one shard per rank).
        evaluator: has ``reset()``, ``process(inputs, outputs)`` and ``evaluate()`` (called on every rank).
        log_period: images between two progress lines.
    """
    try:
        total = len(data_loader)  # type: ignore[arg-type]
    except TypeError:
        total = None
    logger.info(
        "Start inference on %s batches (%d rank%s)",
        total if total is not None else "?",
        comm.get_world_size(),
        "s" if comm.get_world_size() > 1 else "",
    )
    num_warmup = min(5, total - 1) if total else 5
    evaluator.reset()
    was_training = model.training
    model.eval()
    num_images = timed_images = 0
    next_log = log_period
    start = timed_start = time.perf_counter()
    try:
        with torch.no_grad():
            for idx, inputs in enumerate(data_loader):
                if idx == num_warmup:
                    timed_start, timed_images = time.perf_counter(), 0
                outputs = model(inputs)
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                evaluator.process(inputs, outputs)
                num_images += len(inputs)
                timed_images += len(inputs)
                if num_images >= next_log:
                    next_log += log_period
                    _log_progress(idx + 1, total, num_images, time.perf_counter() - timed_start, timed_images)
    finally:
        model.train(was_training)
    elapsed = time.perf_counter() - start
    per_image = (time.perf_counter() - timed_start) / max(timed_images, 1)
    logger.info(
        "Total inference time: %s for %d images (%.4f s / image after warm-up, on each of %d rank%s)",
        datetime.timedelta(seconds=int(elapsed)),
        num_images,
        per_image,
        comm.get_world_size(),
        "s" if comm.get_world_size() > 1 else "",
    )
    return evaluator.evaluate()


def _log_progress(done: int, total: Optional[int], num_images: int, seconds: float, images: int) -> None:
    """One progress line; ``seconds`` were spent on the last ``images`` images (warm-up excluded)."""
    per_image = seconds / max(images, 1)
    if total is None:
        logger.info("Inference done %d images, %.4f s / image", num_images, per_image)
        return
    per_batch = per_image * num_images / done  # images per batch so far (1 for the test loader)
    eta = datetime.timedelta(seconds=int(per_batch * (total - done)))
    logger.info(
        "Inference done %d/%d batches (%d images), %.4f s / image, ETA %s", done, total, num_images, per_image, eta
    )
