"""Mask2Former trained from instance targets (the instance / panoptic mappers' ``"instances"``), on CPU."""

import cv2
import numpy as np
import pytest
import torch

from freemask.data.mappers.instance import InstanceDatasetMapper, LargeScaleJitter
from freemask.data.panoptic_png import id2rgb
from freemask.modeling import build_model
from freemask.modeling.criterion import targets_from_instances
from freemask.modeling.postprocess import panoptic_inference, resize_mask_logits


def two_objects_batch(n=2, size=32):
    """Two same-class (0) squares, far apart and painted alike, on a class-1 background: three targets per image."""
    first = torch.zeros(size, size, dtype=torch.bool)
    second = torch.zeros(size, size, dtype=torch.bool)
    first[2:12, 2:12] = True
    second[18:30, 16:28] = True
    background = ~(first | second)
    image = torch.where(background, 40, 200).to(torch.uint8).expand(3, size, size)
    instances = {"gt_masks": torch.stack([first, second, background]), "gt_classes": torch.tensor([0, 0, 1])}
    return [{"image": image.clone(), "instances": instances, "height": size, "width": size} for _ in range(n)]


def test_targets_from_instances_pad_with_false_and_keep_every_instance():
    masks = torch.zeros(2, 3, 5, dtype=torch.bool)
    masks[0, 0, 0] = masks[1, 2, 4] = True
    targets = targets_from_instances(
        [
            {"gt_masks": masks, "gt_classes": torch.tensor([3, 3])},
            {"gt_masks": masks[:0], "gt_classes": torch.zeros(0)},
        ],
        (4, 8),
    )
    assert targets[0]["labels"].tolist() == [3, 3] and targets[0]["labels"].dtype == torch.int64
    assert targets[0]["masks"].shape == (2, 4, 8) and targets[0]["masks"].dtype == torch.bool
    assert torch.equal(targets[0]["masks"][:, :3, :5], masks) and not targets[0]["masks"][:, 3:].any()
    assert targets[1]["masks"].shape == (0, 4, 8) and targets[1]["labels"].dtype == torch.int64
    with pytest.raises(ValueError, match="do not fit"):
        targets_from_instances([{"gt_masks": masks, "gt_classes": torch.tensor([0, 0])}], (2, 8))


def test_one_step_on_instances_gives_finite_losses_and_gradients(mask_former_tiny_cfg):
    model = build_model(mask_former_tiny_cfg()).train()
    batch = two_objects_batch(size=40)  # padded to 64 by SIZE_DIVISIBILITY 32
    batch[1]["instances"] = {"gt_masks": torch.zeros(0, 40, 40, dtype=torch.bool), "gt_classes": torch.zeros(0)}
    losses = model(batch)
    assert {"loss_ce", "loss_mask", "loss_dice", "loss_ce_0"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.transformer_decoder.class_embed.weight.grad.abs().sum() > 0


def test_overfits_two_instances_of_one_class(mask_former_tiny_cfg):
    torch.manual_seed(0)
    model = build_model(mask_former_tiny_cfg()).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = two_objects_batch()
    for _ in range(40):
        loss = sum(model(batch).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        outputs = model._decode(model._pad_images([model._normalize(batch[0]["image"])]))
    mask_pred = resize_mask_logits(outputs["pred_masks"][0], (32, 32))
    pan, info = panoptic_inference(outputs["pred_logits"][0], mask_pred, thing_ids=[0, 2, 3])
    things = [s for s in info if s["isthing"] and s["category_id"] == 0]
    assert len(things) == 2  # one segment per object, not one per class
    for gt in batch[0]["instances"]["gt_masks"][:2]:
        ious = [((pan == s["id"]) & gt).sum() / ((pan == s["id"]) | gt).sum() for s in things]
        assert max(ious) > 0.7


def test_instance_mapper_output_trains_the_model(tmp_path, mask_former_tiny_cfg):
    """The mapper's dicts (LSJ, a panoptic PNG) go into the model as they come: one finite step."""
    ids = np.ones((48, 80), np.int32)
    ids[10:30, 20:40], ids[5:15, 60:75] = 2, 3
    image = np.stack([ids * 60] * 3, -1).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "im.png"), image)
    cv2.imwrite(str(tmp_path / "pan.png"), cv2.cvtColor(id2rgb(ids), cv2.COLOR_RGB2BGR))
    segments = [{"id": 1, "category_id": 3, "iscrowd": 0}] + [{"id": i, "category_id": 0, "iscrowd": 0} for i in (2, 3)]
    record = {
        "file_name": str(tmp_path / "im.png"),
        "pan_seg_file_name": str(tmp_path / "pan.png"),
        "segments_info": segments,
    }
    mapper = InstanceDatasetMapper(True, "lsj", LargeScaleJitter(image_size=64, min_scale=0.8, max_scale=1.2))
    batch = [mapper(record, np.random.default_rng(seed)) for seed in (0, 1)]
    model = build_model(mask_former_tiny_cfg()).train()
    losses = model(batch)
    assert all(torch.isfinite(v) for v in losses.values())
