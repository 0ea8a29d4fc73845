import torch

from freemask.modeling import build_model


def test_losses_for_every_layer_and_scores_at_original_resolution(mask_former_tiny_cfg, striped_batch):
    model = build_model(mask_former_tiny_cfg()).train()
    losses = model(striped_batch())
    assert {"loss_ce", "loss_mask", "loss_dice", "loss_ce_0", "loss_dice_2"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not [n for n in no_grad if "level_embed" not in n]  # deformable offsets start at 0 (official init)
    model.eval()
    with torch.no_grad():
        out = model([{"image": torch.zeros(3, 48, 80, dtype=torch.uint8), "height": 96, "width": 160}])
    assert out[0]["sem_seg"].shape == (4, 96, 160) and (out[0]["sem_seg"] >= 0).all()


def test_only_ignored_pixels_give_finite_losses(mask_former_tiny_cfg, striped_batch):
    model = build_model(mask_former_tiny_cfg()).train()
    batch = striped_batch()
    for x in batch:
        x["sem_seg"].fill_(255)
    losses = model(batch)
    assert all(torch.isfinite(v) for v in losses.values())


def test_overfits_one_batch(mask_former_tiny_cfg, striped_batch):
    torch.manual_seed(0)
    model = build_model(mask_former_tiny_cfg()).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = striped_batch(n=2, size=32)
    for _ in range(30):
        loss = sum(model(batch).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        scores = model(batch[:1])[0]["sem_seg"]
    accuracy = (scores.argmax(0) == batch[0]["sem_seg"]).float().mean().item()
    assert accuracy > 0.9


def test_a_batch_mixing_instance_and_semantic_samples_gets_targets_of_each_kind(
    mask_former_tiny_cfg, striped_batch
):
    """DATALOADER.SYN_RATIO in a panoptic run: a real sample's objects are one target each (two cars, two targets),
    a synthetic pair's map one target per class (its two cars merged), padded to the batch; the step trains."""
    model = build_model(mask_former_tiny_cfg()).train()
    real, synthetic = striped_batch()
    cars = torch.zeros(2, 64, 64, dtype=torch.bool)
    cars[0, :10, :10], cars[1, 40:50, 40:50] = True, True
    real = {"image": real["image"], "instances": {"gt_masks": cars, "gt_classes": torch.tensor([3, 3])},
            "height": 64, "width": 64}  # fmt: skip
    synthetic["image"] = synthetic["image"][:, :48, :56].clone()  # smaller: padded to the batch's 64 x 64
    synthetic["sem_seg"] = synthetic["sem_seg"][:48, :56].clone()
    targets = model._mixed_targets([real, synthetic], (64, 64))
    assert targets[0]["labels"].tolist() == [3, 3] and torch.equal(targets[0]["masks"], cars)
    assert targets[1]["labels"].tolist() == [0, 1, 2, 3] and targets[1]["masks"].shape == (4, 64, 64)
    assert not targets[1]["masks"][:, 48:].any() and torch.equal(targets[1]["masks"][3, :48, :56],
                                                                 synthetic["sem_seg"] == 3)  # fmt: skip
    losses = model([real, synthetic])
    assert all(torch.isfinite(v) for v in losses.values())
