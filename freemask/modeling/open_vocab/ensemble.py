"""FreeSeg's test-time class probabilities: the mask classifier and CLIP's region classifier, combined per class.

The mask classifier was trained on the seen classes only, so it is trusted for those and CLIP for the unseen ones:
a geometric mean whose exponent flips with the class's seen flag (bytedance/FreeSeg,
mask2former/open_vocabulary_model.py, ``OpenVocabulary.semantic_inference``, ``trained_mask``).
"""

import torch

# FreeSeg's temperature for the panoptic / instance score and label: softmax(p / 0.01) of the ensembled
# probabilities (OpenVocabulary.panoptic_inference / instance_inference), which pushes a query's score towards 1 for
# its best class.
SHARPEN_TEMPERATURE = 0.01


def ensemble_probabilities(
    mask_logits: torch.Tensor,
    clip_logits: torch.Tensor,
    valid: torch.Tensor,
    seen: torch.Tensor,
    weight: float,
) -> torch.Tensor:
    """Per-query class probabilities ``(Q, K)``.

    Args:
        mask_logits: (Q, K + 1) mask-classifier logits, the last column no-object.
        clip_logits: (Q, K) CLIP region logits.
        valid: bool (Q,), False for a query whose mask is empty (CLIP saw no region): its ``p_clip`` is 1.
        seen: bool (K,), True for the classes the model was trained on.
        weight: lambda in [0, 1] (CLIP_ENSEMBLE_WEIGHT).

    ``p_mask = softmax(mask_logits)[:, :K]`` (the no-object column dropped after the softmax over K + 1),
    ``p_clip = softmax(clip_logits)``; seen class ``p_mask^l * p_clip^(1-l)``, unseen ``p_mask^(1-l) * p_clip^l``.
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(
            f"the ensemble weight (MODEL.CLIP_ADAPTER.CLIP_ENSEMBLE_WEIGHT) must be in [0, 1], got {weight}"
        )
    p_mask = mask_logits.float().softmax(-1)[:, :-1]
    p_clip = clip_logits.float().softmax(-1)
    p_clip = torch.where(valid.to(p_clip.device)[:, None], p_clip, torch.ones_like(p_clip))
    seen = seen.to(device=p_mask.device, dtype=torch.bool)
    mask_exponent = torch.where(seen, torch.tensor(weight), torch.tensor(1.0 - weight)).to(p_mask)
    return p_mask.pow(mask_exponent) * p_clip.pow(1.0 - mask_exponent)


def sharpen(probs: torch.Tensor) -> torch.Tensor:
    """FreeSeg's ``softmax(p / 0.01)`` over the classes of ``probs`` (Q, K), for panoptic / instance scores."""
    return (probs.float() / SHARPEN_TEMPERATURE).softmax(-1)
