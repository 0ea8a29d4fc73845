"""CLIP classifies the region of each predicted mask: FreeSeg's ``MaskFormerClipAdapter`` region path
(bytedance/FreeSeg, mask2former/modeling/clip_adapter/adapter.py), used at test time for the ensemble with the mask
classifier.

Per query: the mask is binarised (probability > threshold; an empty mask makes the query invalid), the box around it
(grown about its centre by ``expand_ratio``, clipped to the image) is cut out of the un-normalised image, the pixels
outside the mask are filled with CLIP's mean colour ("mean") or black ("zero"), the crop is CLIP-normalised, resized
bicubically to ``size`` x ``size`` (``align_corners=True`` as FreeSeg), encoded, normalised, and scored against the
text features as 100 x cosine (FreeSeg's fixed temperature, not CLIP's learned scale). The hard mask is used for
filling (FreeSeg's ``MASK_MATTING False``, the only setting its configs use).
"""

from dataclasses import dataclass
from typing import List, Tuple

import torch
import torch.nn.functional as F

from ...config import CfgNode, ConfigError
from .model import FrozenClip

LOGIT_SCALE = 100.0
MASK_FILLS = ("mean", "zero")


def fill_color(clip: FrozenClip, fill: str) -> Tuple[float, float, float]:
    """RGB 0..255 of the pixels outside a mask: CLIP's mean colour x 255 ("mean") or 0 ("zero")."""
    if fill == "mean":
        return tuple(255.0 * c for c in clip.pixel_mean)
    if fill == "zero":
        return (0.0, 0.0, 0.0)
    raise ConfigError(f"MODEL.CLIP_ADAPTER.MASK_FILL must be one of {list(MASK_FILLS)}, got {fill!r}")


def mask_box(mask: torch.Tensor, expand_ratio: float = 1.0) -> Tuple[int, int, int, int]:
    """(left, top, right, bottom), right/bottom exclusive, of the non-empty bool mask (H, W), grown about its centre
    by ``expand_ratio`` and clipped to the image. Coordinates are truncated to integers as FreeSeg's ``expand_box``."""
    height, width = mask.shape
    rows = torch.nonzero(mask.any(dim=1))[:, 0]
    cols = torch.nonzero(mask.any(dim=0))[:, 0]
    x1, y1, x2, y2 = int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1
    cx, cy = 0.5 * (x1 + x2), 0.5 * (y1 + y2)
    half_w, half_h = 0.5 * (x2 - x1) * expand_ratio, 0.5 * (y2 - y1) * expand_ratio
    left, top, right, bottom = (int(v) for v in (cx - half_w, cy - half_h, cx + half_w, cy + half_h))
    return max(left, 0), max(top, 0), min(right, width), min(bottom, height)


def crop_regions(
    clip: FrozenClip,
    image: torch.Tensor,
    masks: torch.Tensor,
    fill: str = "mean",
    expand_ratio: float = 1.0,
    size: int = 224,
) -> torch.Tensor:
    """(R, 3, size, size) CLIP-normalised crops of ``image`` (3, H, W) float RGB 0..255, one per non-empty bool mask
    of ``masks`` (R, H, W)."""
    color = image.new_tensor(fill_color(clip, fill)).view(3, 1, 1)
    crops: List[torch.Tensor] = []
    for mask in masks:
        left, top, right, bottom = mask_box(mask, expand_ratio)
        inside = mask[top:bottom, left:right].to(image.dtype)
        region = image[:, top:bottom, left:right] * inside + (1 - inside) * color
        region = clip.normalize_image(region[None])
        crops.append(F.interpolate(region, size=(size, size), mode="bicubic", align_corners=True))
    return torch.cat(crops) if crops else image.new_zeros((0, 3, size, size))


def region_logits(
    clip: FrozenClip,
    image: torch.Tensor,
    mask_probs: torch.Tensor,
    text_features: torch.Tensor,
    mask_threshold: float = 0.5,
    fill: str = "mean",
    expand_ratio: float = 1.0,
    size: int = 224,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(logits (Q, K) = 100 * cos(region, text), valid bool (Q,))`` for ``image`` (3, H, W) float RGB 0..255,
    ``mask_probs`` (Q, H, W) in 0..1 and normalised ``text_features`` (K, E). Rows of invalid (empty-mask) queries
    are 0; the ensemble treats them separately (bytedance/FreeSeg, mask2former/open_vocabulary_model.py,
    ``OpenVocabulary.semantic_inference``)."""
    if size != clip.image_size:
        raise ConfigError(
            f"MODEL.CLIP_ADAPTER.REGION_SIZE {size} differs from the input size {clip.image_size} of CLIP {clip.name}; "
            f"set REGION_SIZE {clip.image_size}"
        )
    binary = mask_probs > mask_threshold
    valid = binary.flatten(1).any(dim=1)
    logits = text_features.new_zeros((mask_probs.shape[0], text_features.shape[0]))
    if bool(valid.any()):
        crops = crop_regions(clip, image.to(text_features.dtype), binary[valid], fill, expand_ratio, size)
        features = F.normalize(clip.encode_image(crops).to(text_features.dtype), dim=-1)
        logits[valid] = LOGIT_SCALE * features @ text_features.t()
    return logits, valid


@dataclass(frozen=True)
class RegionClassifier:
    """The region settings of MODEL.CLIP_ADAPTER (MASK_THR, MASK_FILL, MASK_EXPAND_RATIO, REGION_SIZE), applied by
    :func:`region_logits`."""

    mask_threshold: float = 0.5
    fill: str = "mean"
    expand_ratio: float = 1.0
    size: int = 224

    def __post_init__(self) -> None:
        if self.fill not in MASK_FILLS:
            raise ConfigError(f"MODEL.CLIP_ADAPTER.MASK_FILL must be one of {list(MASK_FILLS)}, got {self.fill!r}")

    @classmethod
    def from_config(cls, cfg: CfgNode) -> "RegionClassifier":
        a = cfg.MODEL.CLIP_ADAPTER
        return cls(a.MASK_THR, a.MASK_FILL, a.MASK_EXPAND_RATIO, a.REGION_SIZE)

    def __call__(
        self, clip: FrozenClip, image: torch.Tensor, mask_probs: torch.Tensor, text_features: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        return region_logits(
            clip, image, mask_probs, text_features, self.mask_threshold, self.fill, self.expand_ratio, self.size
        )
