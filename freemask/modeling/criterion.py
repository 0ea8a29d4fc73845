"""Mask2Former's set-prediction losses: class cross-entropy after Hungarian matching, and point-sampled mask losses.

Each decoder layer predicts Q (class, mask) pairs. After matching, matched queries learn their target's class and
mask, unmatched queries learn "no object" (down-weighted by ``eos_coef`` because they are the large majority). The
mask losses (sigmoid BCE and dice) are evaluated on importance-sampled points, not on full masks, which is what
makes training at 512x512 with 100 queries and 10 supervised layers affordable.
"""

import re
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..utils import comm
from .matcher import HungarianMatcher
from .point_sampling import calculate_uncertainty, get_uncertain_point_coords_with_randomness, point_sample

Indices = list[tuple[torch.Tensor, torch.Tensor]]


def targets_from_semantic(sem_seg: torch.Tensor, ignore_label: int) -> list[dict[str, torch.Tensor]]:
    """Per-image set targets from semantic maps (B, H, W) int64: one binary mask per class present.

    Returns per image ``"labels"`` (T,) int64, sorted, and ``"masks"`` (T, H, W) bool. ``ignore_label`` pixels belong
    to no mask; an image with only ignore pixels gets T = 0 (its queries are then all supervised as no-object).
    """
    targets = []
    for sem in sem_seg:
        labels = torch.unique(sem)
        labels = labels[labels != ignore_label].to(torch.int64)
        targets.append({"labels": labels, "masks": sem[None] == labels[:, None, None]})
    return targets


def targets_from_instances(
    instances: Sequence[Mapping[str, torch.Tensor]], size: tuple[int, int], device: torch.device | None = None
) -> list[dict[str, torch.Tensor]]:
    """Per-image set targets from instance annotations, padded to the batch's (H, W) = ``size``.

    ``instances`` holds per image ``"gt_masks"`` bool (T, h, w) with h <= H, w <= W (the image's own size before the
    batch padding) and ``"gt_classes"`` int64 (T,). Returns per image ``"labels"`` (T,) int64 and ``"masks"``
    (T, H, W) bool, False in the padding (as ignore pixels are in :func:`targets_from_semantic`). Unlike semantic
    targets, one class may have several masks (two cars are two targets) and masks may overlap.
    """
    targets = []
    for inst in instances:
        masks = inst["gt_masks"].to(device=device, dtype=torch.bool)
        h, w = masks.shape[-2:]
        if h > size[0] or w > size[1]:
            raise ValueError(f"targets_from_instances: masks of size {h}x{w} do not fit the padded batch {size}")
        padded = masks.new_zeros((masks.shape[0], *size))
        padded[:, :h, :w] = masks
        targets.append({"labels": inst["gt_classes"].to(device=device, dtype=torch.int64), "masks": padded})
    return targets


def sigmoid_bce_loss(logits: torch.Tensor, labels: torch.Tensor, num_masks: float) -> torch.Tensor:
    """Point-averaged BCE per mask, summed over masks and divided by ``num_masks``: (M, P) x (M, P) -> scalar."""
    loss = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    return loss.mean(1).sum() / num_masks


def dice_loss(logits: torch.Tensor, labels: torch.Tensor, num_masks: float) -> torch.Tensor:
    """``1 - (2 x.y + 1) / (sum x + sum y + 1)`` per mask (x = sigmoid), summed and divided by ``num_masks``."""
    probs = logits.sigmoid()
    numerator = 2.0 * (probs * labels).sum(-1)
    denominator = probs.sum(-1) + labels.sum(-1)
    return (1.0 - (numerator + 1.0) / (denominator + 1.0)).sum() / num_masks


class SetCriterion(nn.Module):
    """Losses of one Mask2Former forward, for the final layer and every auxiliary (deep-supervision) layer.

    Args:
        num_classes: K, the number of real classes; logit K is no-object.
        matcher: assigns queries to targets (run once per supervised layer).
        weight_dict: loss name -> weight, used by :meth:`weighted`; a base name (``"loss_ce"``) also covers the
            auxiliary copies (``"loss_ce_3"``) unless those are listed themselves.
        eos_coef: cross-entropy weight of the no-object class.
        losses: which loss groups to compute, among ``"labels"`` (loss_ce) and ``"masks"`` (loss_mask, loss_dice).
        num_points, oversample_ratio, importance_sample_ratio: point sampling of the mask losses.
    """

    def __init__(
        self,
        num_classes: int,
        matcher: HungarianMatcher,
        weight_dict: Mapping[str, float],
        eos_coef: float = 0.1,
        losses: Sequence[str] = ("labels", "masks"),
        num_points: int = 12544,
        oversample_ratio: float = 3.0,
        importance_sample_ratio: float = 0.75,
    ):
        super().__init__()
        unknown = set(losses) - {"labels", "masks"}
        if unknown:
            raise ValueError(f"SetCriterion: unknown losses {sorted(unknown)}; choose among 'labels' and 'masks'")
        self.num_classes = num_classes
        self.matcher = matcher
        self.weight_dict = dict(weight_dict)
        self.eos_coef = eos_coef
        self.losses = tuple(losses)
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = eos_coef
        self.register_buffer("empty_weight", empty_weight, persistent=False)

    def loss_labels(
        self, outputs: dict[str, torch.Tensor], targets: Sequence[dict[str, torch.Tensor]], indices: Indices
    ) -> dict[str, torch.Tensor]:
        """Weighted cross-entropy over all B x Q queries; unmatched queries target no-object (class K)."""
        logits = outputs["pred_logits"].float()  # (B, Q, K + 1)
        target_classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.int64, device=logits.device)
        for b, ((query_idx, target_idx), target) in enumerate(zip(indices, targets)):
            labels = target["labels"].to(logits.device)
            target_classes[b, query_idx.to(logits.device)] = labels[target_idx.to(logits.device)]
        loss = F.cross_entropy(logits.transpose(1, 2), target_classes, weight=self.empty_weight.to(logits.device))
        return {"loss_ce": loss}

    def loss_masks(
        self,
        outputs: dict[str, torch.Tensor],
        targets: Sequence[dict[str, torch.Tensor]],
        indices: Indices,
        num_masks: float,
    ) -> dict[str, torch.Tensor]:
        """BCE and dice between matched masks on points chosen where the prediction is uncertain."""
        pred_masks = outputs["pred_masks"]  # (B, Q, H, W)
        batch_idx = torch.cat([torch.full_like(q, b) for b, (q, _) in enumerate(indices)]).to(pred_masks.device)
        query_idx = torch.cat([q for q, _ in indices]).to(pred_masks.device)
        if query_idx.numel() == 0:
            zero = pred_masks.sum() * 0.0  # keeps the graph (and DDP's gradient bookkeeping) intact
            return {"loss_mask": zero, "loss_dice": zero.clone()}
        with torch.autocast(device_type=pred_masks.device.type, enabled=False):
            src = pred_masks[batch_idx, query_idx].float()[:, None]  # (M, 1, H, W)
            with torch.no_grad():
                coords = get_uncertain_point_coords_with_randomness(
                    src, calculate_uncertainty, self.num_points, self.oversample_ratio, self.importance_sample_ratio
                )  # (M, P, 2)
                # Targets may differ in size between images, so read each image's matched masks separately.
                labels, start = [], 0
                for (_, target_idx), target in zip(indices, targets):
                    masks = target["masks"][target_idx.to(target["masks"].device)].to(pred_masks.device).float()
                    stop = start + masks.shape[0]
                    labels.append(point_sample(masks[:, None], coords[start:stop])[:, 0])
                    start = stop
                point_labels = torch.cat(labels)  # (M, P)
            point_logits = point_sample(src, coords)[:, 0]  # (M, P)
            return {
                "loss_mask": sigmoid_bce_loss(point_logits, point_labels, num_masks),
                "loss_dice": dice_loss(point_logits, point_labels, num_masks),
            }

    def _layer_losses(
        self, outputs: dict[str, torch.Tensor], targets: Sequence[dict[str, torch.Tensor]], num_masks: float
    ) -> dict[str, torch.Tensor]:
        indices = self.matcher(outputs, targets)
        losses: dict[str, torch.Tensor] = {}
        if "labels" in self.losses:
            losses.update(self.loss_labels(outputs, targets, indices))
        if "masks" in self.losses:
            losses.update(self.loss_masks(outputs, targets, indices, num_masks))
        return losses

    def forward(
        self, outputs: dict[str, torch.Tensor], targets: Sequence[dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        """Unweighted losses of the last layer (``loss_ce``, ``loss_mask``, ``loss_dice``) and of each entry of
        ``outputs["aux_outputs"]`` (suffix ``_0`` ... ``_{n-1}``).

        Mask losses are normalised by the number of target masks averaged over ranks (at least 1), so every rank
        uses the same normaliser and the gradient does not depend on how images are split across ranks.
        """
        device = outputs["pred_logits"].device
        num_masks = torch.tensor([float(sum(len(t["labels"]) for t in targets))], device=device)
        num_masks = (comm.all_reduce_sum(num_masks) / comm.get_world_size()).clamp(min=1.0).item()
        losses = self._layer_losses(outputs, targets, num_masks)
        for i, aux in enumerate(outputs.get("aux_outputs", [])):
            losses.update({f"{k}_{i}": v for k, v in self._layer_losses(aux, targets, num_masks).items()})
        return losses

    def weighted(self, losses: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``losses`` multiplied by their ``weight_dict`` entries (exact name first, else the name without ``_<i>``)."""
        weighted = {}
        for name, value in losses.items():
            key = name if name in self.weight_dict else re.sub(r"_\d+$", "", name)
            if key not in self.weight_dict:
                raise ValueError(f"SetCriterion: no weight for {name!r}; add {key!r} to weight_dict")
            weighted[name] = value * self.weight_dict[key]
        return weighted

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, eos_coef={self.eos_coef}, losses={self.losses}, "
            f"num_points={self.num_points}, oversample_ratio={self.oversample_ratio}, "
            f"importance_sample_ratio={self.importance_sample_ratio}"
        )
