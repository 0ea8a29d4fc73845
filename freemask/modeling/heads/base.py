"""What every per-pixel head shares: the loss arguments, the dropout + 1x1 classifier, ``losses()`` and ``forward()``.

The role of MMSegmentation's ``BaseDecodeHead`` (open-mmlab/mmsegmentation, mmseg/models/decode_heads/decode_head.py,
``BaseDecodeHead``: ``ignore_index``, ``loss_decode``, ``dropout_ratio``, ``conv_seg``, ``cls_seg``, ``losses``): a
head subclasses :class:`PixelHead`, builds its own layers and writes :meth:`PixelHead.layers`; a new loss (e.g. one
that treats FreeMask-filtered pixels differently) then changes one method for every head.
"""

from typing import Any, Dict, List

import torch
from torch import nn

from ...config import CfgNode
from ..backbone.base import ShapeSpec
from .losses import pixel_cross_entropy


class PixelHead(nn.Module):
    """Base of the heads whose output is class logits ``(N, K, h, w)`` trained by pixel-wise cross-entropy.

    Args:
        num_classes: K.
        loss_weight: factor of ``loss_sem_seg``.
        ignore_label: label of unlabelled pixels (``MODEL.SEM_SEG_HEAD.IGNORE_VALUE``).
        loss_avg_non_ignore: average over labelled pixels only (detectron2) instead of every pixel (MMSegmentation).
        ohem_min_kept: > 0 keeps only the hardest ``ohem_min_kept * N`` labelled pixels (see ``pixel_cross_entropy``).

    The classifier is added by the subclass after its own layers (:meth:`_add_classifier`), so modules are created,
    and the random generator drawn, in the order each head always had: a seeded run starts from the same weights.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        loss_weight: float = 1.0,
        ignore_label: int = 255,
        loss_avg_non_ignore: bool = False,
        ohem_min_kept: int = 0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.loss_weight = loss_weight
        self.ignore_label = ignore_label
        self.loss_avg_non_ignore = loss_avg_non_ignore
        self.ohem_min_kept = ohem_min_kept
        self._classifier_name = ""

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: Dict[str, ShapeSpec]) -> Dict[str, Any]:
        """The ``MODEL.SEM_SEG_HEAD`` keys every head reads; a subclass adds its own to this mapping."""
        h = cfg.MODEL.SEM_SEG_HEAD
        return {
            "num_classes": h.NUM_CLASSES,
            "in_features": list(h.IN_FEATURES),
            "loss_weight": h.LOSS_WEIGHT,
            "ignore_label": h.IGNORE_VALUE,
            "loss_avg_non_ignore": h.LOSS_AVG_NON_IGNORE,
        }

    def _features_by_stride(self, input_shape: Dict[str, ShapeSpec], in_features: List[str]) -> List[str]:
        """``in_features`` finest first, or an error naming the ones the backbone does not offer."""
        missing = [f for f in in_features if f not in input_shape]
        if missing:
            offered = sorted(input_shape)
            raise ValueError(f"{type(self).__name__} needs features {missing}; the backbone offers {offered}")
        return sorted(in_features, key=lambda f: input_shape[f].stride)

    def _add_classifier(self, channels: int, dropout: float, name: str = "conv_seg") -> None:
        """Dropout (2D, none at 0) and the 1x1 conv to K logits, registered as ``name`` (the checkpoints' key)."""
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        setattr(self, name, nn.Conv2d(channels, self.num_classes, 1))
        self._classifier_name = name

    def _init_classifier(self) -> None:
        """MMSegmentation's classifier initialisation: normal with std 0.01, zero bias."""
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.zeros_(self.classifier.bias)

    @property
    def classifier(self) -> nn.Conv2d:
        return getattr(self, self._classifier_name)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, K, h, w)`` of the decoded map ``x`` ``(N, C, h, w)``: dropout, then the classifier."""
        return self.classifier(self.dropout(x))

    def layers(self, features: Dict[str, torch.Tensor], *args: Any) -> Any:
        """The head's compute: class logits ``(N, K, h, w)`` (or a tuple whose first item they are)."""
        raise NotImplementedError

    def cross_entropy(self, logits: torch.Tensor, targets: torch.Tensor, ohem_min_kept: int = 0) -> torch.Tensor:
        """Unweighted cross-entropy of ``logits`` at the label resolution, with this head's ignore label and mean."""
        return pixel_cross_entropy(logits, targets, self.ignore_label, self.loss_avg_non_ignore, ohem_min_kept)

    def losses(self, logits: torch.Tensor, targets: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``targets`` ``(N, H, W)`` with the ignore label -> ``{"loss_sem_seg": loss_weight x cross-entropy}``.

        Averaged over every label pixel, ignored ones counting 0, or with ``loss_avg_non_ignore`` over the labelled
        ones only; a batch whose pixels are all ignored gives 0 rather than 0/0 = NaN.
        """
        return {"loss_sem_seg": self.cross_entropy(logits, targets, self.ohem_min_kept) * self.loss_weight}

    def forward(self, features: Dict[str, torch.Tensor], *args: Any) -> Any:
        return self.layers(features, *args)
