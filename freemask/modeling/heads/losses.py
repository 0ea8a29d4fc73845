"""The per-pixel loss every encoder-decoder head shares."""

import torch
import torch.nn.functional as F


def pixel_cross_entropy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    ignore_label: int,
    avg_non_ignore: bool = True,
    ohem_min_kept: int = 0,
) -> torch.Tensor:
    """Cross-entropy of ``logits`` ``(N, K, h, w)``, resized bilinearly to ``targets`` ``(N, H, W)``, as one scalar.

    ``avg_non_ignore`` True divides by the labelled pixels (detectron2's Semantic FPN); False divides by every label
    pixel, ignored ones counting 0 (MMSegmentation's default, so the published SegFormer/Segmenter runs': a crop with
    many ignored, e.g. FreeMask-filtered, pixels weighs less). An all-ignored batch gives 0, not 0/0 = NaN.

    ``ohem_min_kept`` > 0 is MMSegmentation's ``OHEMPixelSampler`` without threshold (SeMask Large): only the
    ``ohem_min_kept * N`` labelled pixels of highest loss count, the divisor staying as above.
    """
    logits = F.interpolate(logits.float(), size=targets.shape[-2:], mode="bilinear", align_corners=False)
    count = (targets != ignore_label).sum() if avg_non_ignore else targets.new_tensor(targets.numel())
    if ohem_min_kept <= 0:
        total = F.cross_entropy(logits, targets, ignore_index=ignore_label, reduction="sum")
        return total / count.clamp(min=1)
    losses = F.cross_entropy(logits, targets, ignore_index=ignore_label, reduction="none").flatten()
    kept = min(ohem_min_kept * targets.shape[0], losses.numel())
    valid = (targets != ignore_label).flatten()
    ranked = torch.where(valid, losses.detach(), losses.new_tensor(-1.0))  # ignored pixels rank last
    hardest = ranked.topk(kept).indices
    total = (losses[hardest] * valid[hardest]).sum()
    return total / count.clamp(min=1)
