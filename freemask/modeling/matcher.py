"""Hungarian matching between Mask2Former's queries and the ground-truth masks of each image.

Set prediction needs a one-to-one assignment before any loss can be computed: each ground-truth mask is given to
the query that already predicts it best, and every other query is taught to predict "no object". The matching
cost mixes the classification probability and two mask similarities (sigmoid BCE and dice), all evaluated on one
set of random points per image (shared by predictions and targets) so the cost is cheap and resolution-agnostic.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

from .point_sampling import point_sample


def pairwise_sigmoid_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over points of BCE(sigmoid(logits[q]), targets[t]) for every pair: (Q, P) x (T, P) -> (Q, T).

    Written as two matrix products (``softplus(-x)`` against the positives, ``softplus(x)`` against the negatives) so
    that the Q x T x P tensor is never materialised.
    """
    num_points = logits.shape[1]
    pos = F.softplus(-logits)  # BCE where the target is 1
    neg = F.softplus(logits)  # BCE where the target is 0
    return (pos @ targets.T + neg @ (1.0 - targets).T) / num_points


def pairwise_dice(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``1 - (2 x.y + 1) / (sum x + sum y + 1)`` for every pair, x = sigmoid(logits): (Q, P) x (T, P) -> (Q, T)."""
    probs = logits.sigmoid()
    numerator = 2.0 * probs @ targets.T
    denominator = probs.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1.0 - (numerator + 1.0) / (denominator + 1.0)


class HungarianMatcher(nn.Module):
    """One-to-one query/target assignment minimising ``cost_class * C_cls + cost_mask * C_bce + cost_dice * C_dice``.

    Args:
        cost_class: weight of ``-p(target class)`` (softmax over K classes + no-object).
        cost_mask: weight of the point-averaged pairwise sigmoid BCE.
        cost_dice: weight of the pairwise dice cost.
        num_points: points sampled uniformly per image for the mask costs.
    """

    def __init__(
        self, cost_class: float = 2.0, cost_mask: float = 5.0, cost_dice: float = 5.0, num_points: int = 12544
    ):
        super().__init__()
        if cost_class == 0 and cost_mask == 0 and cost_dice == 0:
            raise ValueError("HungarianMatcher: all costs are 0, so every assignment ties; give one a positive weight")
        self.cost_class = cost_class
        self.cost_mask = cost_mask
        self.cost_dice = cost_dice
        self.num_points = num_points

    @torch.no_grad()
    def cost_matrix(
        self,
        pred_logits: torch.Tensor,
        pred_masks: torch.Tensor,
        tgt_labels: torch.Tensor,
        tgt_masks: torch.Tensor,
        point_coords: torch.Tensor,
    ) -> torch.Tensor:
        """The (Q, T) matching cost of one image, in float32 whatever the autocast state.

        Args:
            pred_logits: (Q, K + 1) class logits, the last one being no-object.
            pred_masks: (Q, H, W) mask logits.
            tgt_labels: (T,) int64 class ids in ``[0, K)``.
            tgt_masks: (T, H', W') binary masks (any dtype); H', W' may differ from H, W.
            point_coords: (P, 2) ``(x, y)`` in ``[0, 1]``, read from predictions and targets alike.
        """
        with torch.autocast(device_type=pred_logits.device.type, enabled=False):
            probs = pred_logits.float().softmax(-1)  # (Q, K + 1)
            class_cost = -probs[:, tgt_labels]  # (Q, T)
            coords = point_coords.float()
            pred_points = point_sample(pred_masks.float()[:, None], coords.expand(pred_masks.shape[0], -1, -1))[:, 0]
            tgt_points = point_sample(tgt_masks.float()[:, None], coords.expand(tgt_masks.shape[0], -1, -1))[:, 0]
            mask_cost = pairwise_sigmoid_bce(pred_points, tgt_points)
            dice_cost = pairwise_dice(pred_points, tgt_points)
            return self.cost_class * class_cost + self.cost_mask * mask_cost + self.cost_dice * dice_cost

    @torch.no_grad()
    def forward(
        self, outputs: dict[str, torch.Tensor], targets: Sequence[dict[str, torch.Tensor]]
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Match each image's queries to its targets.

        Args:
            outputs: ``"pred_logits"`` (B, Q, K + 1) and ``"pred_masks"`` (B, Q, H, W); other keys are ignored.
            targets: per image ``"labels"`` (T_b,) int64 and ``"masks"`` (T_b, H', W').

        Returns:
            per image ``(query_idx, target_idx)``, two int64 CPU tensors of length ``min(Q, T_b)`` (empty when the
            image has no target), ordered by query index.

        The points of image ``b`` are ``torch.rand(num_points, 2)``, drawn in image order from the global generator
        (images without targets draw none), so a seeded call is reproducible.
        """
        pred_logits, pred_masks = outputs["pred_logits"], outputs["pred_masks"]
        if len(targets) != pred_logits.shape[0]:
            raise ValueError(f"HungarianMatcher: {len(targets)} targets for a batch of {pred_logits.shape[0]} images")
        indices = []
        for b, target in enumerate(targets):
            if target["labels"].numel() == 0:
                empty = torch.empty(0, dtype=torch.int64)
                indices.append((empty, empty.clone()))
                continue
            coords = torch.rand(self.num_points, 2, device=pred_masks.device)
            cost = self.cost_matrix(pred_logits[b], pred_masks[b], target["labels"], target["masks"], coords)
            rows, cols = linear_sum_assignment(cost.cpu().numpy())
            indices.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
        return indices

    def extra_repr(self) -> str:
        return (
            f"cost_class={self.cost_class}, cost_mask={self.cost_mask}, cost_dice={self.cost_dice}, "
            f"num_points={self.num_points}"
        )
