"""The per-pixel loss every encoder-decoder head shares."""

import torch
import torch.nn.functional as F


def pixel_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, ignore_value: int, avg_non_ignore: bool = True
) -> torch.Tensor:
    """Cross-entropy of ``logits`` ``(N, K, h, w)``, resized bilinearly to ``targets`` ``(N, H, W)``, as one scalar.

    ``avg_non_ignore`` True divides by the labelled pixels (detectron2's Semantic FPN); False divides by every label
    pixel, ignored ones counting 0 (MMSegmentation's default, so the published SegFormer/Segmenter runs': a crop with
    many ignored, e.g. FreeMask-filtered, pixels weighs less). An all-ignored batch gives 0, not 0/0 = NaN.
    """
    logits = F.interpolate(logits.float(), size=targets.shape[-2:], mode="bilinear", align_corners=False)
    total = F.cross_entropy(logits, targets, ignore_index=ignore_value, reduction="sum")
    count = (targets != ignore_value).sum() if avg_non_ignore else targets.new_tensor(targets.numel())
    return total / count.clamp(min=1)
