"""The per-pixel loss of a batch, as the model sees it at test time, and its class-wise sums (pass 1 of the filter).

Sums are kept in fixed point (int64, ``LOSS_SCALE`` units per nat) rather than floats: integer addition does not
depend on order, so the class means are bit-identical whatever the number of ranks, the order in which batches finish
or whether CUDA atomics were used, and ``class_loss.json`` is byte-identical between a 1-GPU and an 8-GPU run. The
rounding costs at most ``0.5 / LOSS_SCALE`` nats per pixel (5e-7); an int64 holds 8.8e12 nats, about 30,000 times
the total loss of ADE20K's training set at a mean loss of 1.
"""

from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from ...utils import comm
from ..class_loss import ClassLoss
from ..loss_histograms import LossHistograms

LOSS_SCALE = 2**20


def label_nll(log_probs: torch.Tensor, labels: torch.Tensor, ignore_label: int) -> torch.Tensor:
    """Float32 ``(N, H, W)`` loss ``-log p(label)`` for ``log_probs`` ``(N, K, H, W)`` and ``labels`` ``(N, H, W)``;
    0 where the label is ``ignore_label``. Per pixel and unweighted, unlike the training losses of ``heads/``."""
    valid = labels != ignore_label
    index = torch.where(valid, labels, torch.zeros_like(labels)).long()
    loss = -log_probs.float().gather(1, index[:, None])[:, 0]
    return torch.where(valid, loss, torch.zeros_like(loss))


class ClassLossAccumulator:
    """Class-wise loss sums and pixel counts over many batches, reducible across ranks."""

    def __init__(self, num_classes: int, device: Union[str, torch.device] = "cpu") -> None:
        self.num_classes = num_classes
        self.sums = torch.zeros(num_classes, dtype=torch.int64, device=device)
        self.counts = torch.zeros(num_classes, dtype=torch.int64, device=device)

    def add(self, loss: torch.Tensor, labels: torch.Tensor, ignore_label: int) -> None:
        """Add a loss map and its labels (same shape); pixels labelled ``ignore_label`` are left out."""
        valid = labels != ignore_label
        classes = labels[valid].long()
        if classes.numel() and int(classes.max()) >= self.num_classes:
            raise ValueError(f"label {int(classes.max())} outside 0..{self.num_classes - 1}")
        fixed = torch.round(loss[valid].double() * LOSS_SCALE).long()
        self.sums.index_add_(0, classes.to(self.sums.device), fixed.to(self.sums.device))
        self.counts += torch.bincount(classes, minlength=self.num_classes).to(self.counts.device)

    def all_reduce(self) -> None:
        """Sum the statistics of every rank into every rank (no-op in one process)."""
        comm.all_reduce_sum(self.sums)
        comm.all_reduce_sum(self.counts)

    def loss_sums(self) -> np.ndarray:
        """Float64 ``(K,)`` loss sums in nats."""
        return self.sums.cpu().numpy().astype(np.float64) / LOSS_SCALE

    def to_class_loss(self, dataset: str, names: Sequence[str], ignore_label: int) -> ClassLoss:
        if len(names) != self.num_classes:
            raise ValueError(f"{len(names)} class names for {self.num_classes} classes")
        return ClassLoss.from_sums(dataset, ignore_label, names, self.loss_sums(), self.counts.cpu().numpy())


class HistogramAccumulator:
    """Per-class loss histograms (:mod:`freemask.synthetic.loss_histograms`) over many batches, reducible across
    ranks. Integer counts, so the sum is the same in any order and on any number of ranks."""

    def __init__(self, num_classes: int, edges: np.ndarray, device: Union[str, torch.device] = "cpu") -> None:
        self.num_classes = num_classes
        self.edges_np = np.asarray(edges, dtype=np.float64)
        self.edges = torch.from_numpy(self.edges_np).to(device)
        self.bins = len(self.edges_np) + 1
        self.counts = torch.zeros(num_classes * 2 * self.bins, dtype=torch.int64, device=device)

    def add(self, loss: torch.Tensor, labels: torch.Tensor, near: torch.Tensor, ignore_label: int) -> None:
        """Add a loss map, its labels and its near-boundary map (same shape); ``ignore_label`` pixels are left out.
        Binned in float64 against the edges, as the rule compares losses with thresholds."""
        valid = labels != ignore_label
        classes = labels[valid].long().to(self.counts.device)
        if classes.numel() and int(classes.max()) >= self.num_classes:
            raise ValueError(f"label {int(classes.max())} outside 0..{self.num_classes - 1}")
        value = loss[valid].double().to(self.counts.device)
        bins = torch.searchsorted(self.edges, value, right=False)  # e[i-1] < loss <= e[i] -> i
        flat = (classes * 2 + near[valid].long().to(self.counts.device)) * self.bins + bins
        self.counts += torch.bincount(flat, minlength=self.counts.numel())

    def all_reduce(self) -> None:
        comm.all_reduce_sum(self.counts)

    def to_histograms(self, dataset: str, names: Sequence[str], ignore_label: int, radius: int) -> LossHistograms:
        counts = self.counts.cpu().numpy().reshape(self.num_classes, 2, self.bins)
        return LossHistograms(dataset, int(ignore_label), list(names), self.edges_np, counts, radius)


class BatchLoss:
    """Per-pixel loss of a batch of items from :class:`~.batches.PairReader`, at each image's full resolution.

    The model prepares the images itself (:meth:`SemanticSegmentor.preprocess`: channel order, normalisation,
    test-time padding), so the filter sees each image as evaluation would; labels are padded with the ignore label
    to the batch's largest size, so padding never counts.
    """

    def __init__(self, model: torch.nn.Module, amp_dtype: Optional[torch.dtype]) -> None:
        self.model = model
        self.amp_dtype = amp_dtype
        self.device = model.device

    @torch.no_grad()
    def __call__(self, items: Sequence[Dict], ignore_label: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Loss and labels ``(N, H, W)`` on the device, (H, W) the largest item size; 0 loss at ignored pixels."""
        height = max(x["image"].shape[-2] for x in items)
        width = max(x["image"].shape[-1] for x in items)
        images = self.model.preprocess([x["image"] for x in items])
        labels = []
        for item in items:
            target = item["labels"].to(self.device, non_blocking=True)
            h, w = target.shape
            labels.append(F.pad(target, (0, width - w, 0, height - h), value=ignore_label))
        device_type = self.device.type
        with torch.autocast(device_type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            log_probs = self.model.predict_log_probs(images)
        label_batch = torch.stack(labels)
        return label_nll(log_probs[..., :height, :width], label_batch, ignore_label), label_batch
