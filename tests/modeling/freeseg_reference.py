"""FreeSeg's panoptic and instance rules written step by step for the tests, from the facts of bytedance/FreeSeg,
mask2former/open_vocabulary_model.py (``OpenVocabulary.panoptic_inference``, ``instance_inference`` and the resizing in
``forward``), one query at a time and without the library's helpers, so that the library's functions are checked
against an independent reading. ``corrected`` fixes the released code's bugs as MODEL.MASK_FORMER.TEST.POSTPROCESS
"freeseg_corrected" documents."""

import numpy as np
import torch
from PIL import Image


def sharpened(probs):
    return torch.softmax(probs.float() / 0.01, dim=-1)


def semantic_map(probs, mask_logits):
    return torch.einsum("qc,qhw->chw", probs.float(), mask_logits.float().sigmoid()).argmax(0)


def panoptic(probs, mask_logits, thing_ids, num_train_classes, overlap, corrected=False):
    """(id map int32 (h, w), segments_info) at the input size."""
    sem = semantic_map(probs, mask_logits)
    scores, labels = sharpened(probs).max(-1)
    ids = torch.zeros(sem.shape, dtype=torch.int32)
    info, first_stuff_id = [], {}
    for q in range(probs.shape[0]):
        label, score = int(labels[q]), float(scores[q])
        if label == num_train_classes and not corrected:
            continue  # the released code's "no-object" test against the training class count
        own = mask_logits[q].float().sigmoid() >= 0.5
        pixels = own & (sem == label)
        if int(pixels.sum()) == 0 or int(pixels.sum()) / int(own.sum()) < overlap:
            continue
        thing = label in thing_ids
        if thing and score < 0.5:
            continue
        if not thing and label in first_stuff_id:
            ids[pixels] = first_stuff_id[label]
            continue
        info.append({"id": len(info) + 1, "isthing": thing, "category_id": label})
        ids[pixels] = len(info)
        if not thing:
            first_stuff_id[label] = len(info)
    return ids, info


def instances(probs, mask_logits, thing_ids, overlap, corrected=False):
    """(masks bool (n, h, w), scores (n,), classes (n,)) at the input size."""
    sem = semantic_map(probs, mask_logits)
    table = sharpened(probs)
    if not corrected:
        table = table[:, :-1]  # the released code drops the last class
    scores, labels = table.max(-1)
    candidates = [q for q in range(probs.shape[0]) if int(labels[q]) in thing_ids]
    on = mask_logits.float() >= 0.5  # logits, not probabilities
    kept = []
    for q in candidates:
        label = int(labels[q])
        own, pixels = int(on[q].sum()), int((on[q] & (sem == label)).sum())
        if pixels > 0 and own > 0 and float(scores[q]) > 0.5 and pixels / own > overlap:
            kept.append(q)
    groups = {}
    for q in kept:  # released: one group for all kept queries; corrected: one per class
        groups.setdefault(int(labels[q]) if corrected else "all", []).append(q)
    for members in groups.values():
        areas = [int(on[q].sum()) for q in members]
        largest = members[areas.index(max(areas))]
        union = torch.zeros_like(on[0])
        for q in members:
            if q != largest:
                union = union | on[q]
        if int(union.sum()) / max(areas) > 0.8:
            kept.remove(largest)
    logits = mask_logits[kept].float()
    masks = logits > 0
    mean_inside = (logits.sigmoid() * masks).flatten(1).sum(1) / (masks.flatten(1).sum(1) + 1e-6)
    return masks, scores[kept] * mean_inside, labels[kept]


def pil_nearest(array: np.ndarray, size) -> np.ndarray:
    """(h, w) uint8 -> (H, W) by PIL's nearest neighbour, as detectron2's ResizeTransform.apply_segmentation."""
    return np.asarray(Image.fromarray(array.astype(np.uint8)).resize((size[1], size[0]), Image.NEAREST))
