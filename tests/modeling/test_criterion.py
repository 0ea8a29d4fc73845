import math

import pytest
import torch
import torch.nn.functional as F

from freemask.modeling.criterion import SetCriterion, targets_from_semantic
from freemask.modeling.matcher import HungarianMatcher
from freemask.modeling.point_sampling import (
    calculate_uncertainty,
    get_uncertain_point_coords_with_randomness,
    point_sample,
)

NUM_CLASSES, NUM_QUERIES, IGNORE = 4, 6, 255
WEIGHTS = {"loss_ce": 2.0, "loss_mask": 5.0, "loss_dice": 5.0}


def make_criterion(num_points: int = 64) -> SetCriterion:
    return SetCriterion(NUM_CLASSES, HungarianMatcher(num_points=num_points), WEIGHTS, num_points=num_points)


def random_outputs(batch: int, num_aux: int = 0, size: int = 8):
    def layer():
        return {
            "pred_logits": torch.randn(batch, NUM_QUERIES, NUM_CLASSES + 1, requires_grad=True),
            "pred_masks": torch.randn(batch, NUM_QUERIES, size, size, requires_grad=True),
        }

    outputs = layer()
    outputs["aux_outputs"] = [layer() for _ in range(num_aux)]
    return outputs


def all_classes_map(batch: int = 2, size: int = 16) -> torch.Tensor:
    """Quadrants of classes 0..3, so every class is present in every image."""
    sem = torch.zeros(batch, size, size, dtype=torch.int64)
    half = size // 2
    sem[:, :half, half:], sem[:, half:, :half], sem[:, half:, half:] = 1, 2, 3
    return sem


def test_targets_from_semantic_on_a_hand_built_map():
    sem = torch.tensor([[[0, 0, 255], [2, 2, 255]], [[255, 255, 255], [255, 255, 255]]])
    first, only_ignore = targets_from_semantic(sem, IGNORE)
    assert first["labels"].tolist() == [0, 2] and first["labels"].dtype == torch.int64
    assert first["masks"].tolist() == [
        [[True, True, False], [False, False, False]],
        [[False, False, False], [True, True, False]],
    ]
    assert only_ignore["labels"].numel() == 0 and only_ignore["masks"].shape == (0, 2, 3)


def test_empty_targets_give_finite_losses_and_all_no_object_cross_entropy():
    torch.manual_seed(0)
    outputs = random_outputs(2, num_aux=1)
    targets = targets_from_semantic(torch.full((2, 16, 16), IGNORE), IGNORE)
    losses = make_criterion()(outputs, targets)
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_mask"].item() == 0.0 and losses["loss_dice"].item() == 0.0
    # every query targets no-object; with one class weight the weighted mean is the plain mean
    no_object = torch.full((2, NUM_QUERIES), NUM_CLASSES)
    expected = F.cross_entropy(outputs["pred_logits"].transpose(1, 2), no_object)
    torch.testing.assert_close(losses["loss_ce"], expected)
    sum(losses.values()).backward()  # the zero mask losses keep the graph usable
    assert outputs["pred_logits"].grad.abs().sum() > 0


def test_all_classes_targets_give_finite_losses_with_gradients_on_logits_and_masks():
    torch.manual_seed(0)
    outputs = random_outputs(2, num_aux=2)
    losses = make_criterion()(outputs, targets_from_semantic(all_classes_map(), IGNORE))
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    for layer in [outputs, *outputs["aux_outputs"]]:
        assert layer["pred_logits"].grad.abs().sum() > 0
        assert layer["pred_masks"].grad.abs().sum() > 0


def test_aux_losses_are_named_by_layer_and_weighted_by_base_name():
    torch.manual_seed(0)
    criterion = make_criterion()
    losses = criterion(random_outputs(1, num_aux=3), targets_from_semantic(all_classes_map(1), IGNORE))
    expected = {f"loss_{n}{s}" for n in ("ce", "mask", "dice") for s in ("", "_0", "_1", "_2")}
    assert set(losses) == expected
    weighted = criterion.weighted(losses)
    torch.testing.assert_close(weighted["loss_dice_2"], 5.0 * losses["loss_dice_2"])
    torch.testing.assert_close(weighted["loss_ce"], 2.0 * losses["loss_ce"])
    with pytest.raises(ValueError, match="add 'loss_extra' to weight_dict"):
        criterion.weighted({"loss_extra_1": losses["loss_ce"]})


def test_no_object_class_is_down_weighted_by_eos_coef():
    torch.manual_seed(0)
    outputs = random_outputs(1)
    targets = [{"labels": torch.tensor([2, 1]), "masks": torch.rand(2, 8, 8) > 0.5}]
    fixed = [(torch.tensor([1, 4]), torch.tensor([0, 1]))]  # query 1 -> class 2, query 4 -> class 1
    criterion = SetCriterion(NUM_CLASSES, lambda outputs, targets: fixed, WEIGHTS, eos_coef=0.1, num_points=16)
    loss = criterion(outputs, targets)["loss_ce"]
    classes = torch.full((NUM_QUERIES,), NUM_CLASSES)
    classes[1], classes[4] = 2, 1
    nll = F.cross_entropy(outputs["pred_logits"][0], classes, reduction="none")
    weights = torch.where(classes == NUM_CLASSES, 0.1, 1.0)
    torch.testing.assert_close(loss, (weights * nll).sum() / weights.sum())


def test_perfect_predictions_have_lower_losses_than_random_ones():
    torch.manual_seed(0)
    sem = all_classes_map(2, 32)
    targets = targets_from_semantic(sem, IGNORE)
    logits = torch.full((2, NUM_QUERIES, NUM_CLASSES + 1), -10.0)
    logits[:, :, NUM_CLASSES] = 10.0  # unmatched queries: confident no-object
    masks = torch.full((2, NUM_QUERIES, 32, 32), -20.0)
    for b, target in enumerate(targets):
        for q, (label, mask) in enumerate(zip(target["labels"], target["masks"])):
            logits[b, q, NUM_CLASSES], logits[b, q, label] = -10.0, 10.0
            masks[b, q] = torch.where(mask, 20.0, -20.0)
    random_layer = random_outputs(2, size=32)
    # Uniform points: most fall inside regions, where a perfect prediction has ~0 loss; the few within half a pixel
    # of a boundary or of the zero-padded border keep the BCE above 0.
    uniform = SetCriterion(
        NUM_CLASSES, HungarianMatcher(num_points=256), WEIGHTS, num_points=256, importance_sample_ratio=0.0
    )
    perfect = uniform({"pred_logits": logits, "pred_masks": masks}, targets)
    random = uniform(random_layer, targets)
    assert perfect["loss_ce"] < 1e-3 < random["loss_ce"]
    assert perfect["loss_mask"] < 0.3 * random["loss_mask"] and perfect["loss_dice"] < 0.1 * random["loss_dice"]
    # Importance sampling seeks the boundaries, where even the perfect map interpolates to logit ~0 against a soft
    # label ~0.5 (BCE ~ log 2); it must still not lose to a random prediction.
    sampled = make_criterion(num_points=256)
    perfect = sampled({"pred_logits": logits, "pred_masks": masks}, targets)
    random = sampled(random_layer, targets)
    assert perfect["loss_mask"] < 0.6 * random["loss_mask"] and perfect["loss_dice"] < 0.2 * random["loss_dice"]


def test_point_sample_matches_manual_bilinear_with_zero_padding():
    torch.manual_seed(0)
    image = torch.randn(1, 2, 3, 4)
    coords = torch.rand(1, 25, 2) * 1.2 - 0.1  # some points fall in the zero-padded border band

    def manual(channel: int, x: float, y: float) -> float:
        px, py = x * 4 - 0.5, y * 3 - 0.5  # align_corners=False: pixel j's centre is at (j + 0.5) / size
        x0, y0 = math.floor(px), math.floor(py)
        total = 0.0
        for xi, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
            for yi, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
                if 0 <= xi < 4 and 0 <= yi < 3:
                    total += wx * wy * image[0, channel, yi, xi].item()
        return total

    out = point_sample(image, coords)
    assert out.shape == (1, 2, 25)
    expected = torch.tensor([[[manual(c, x, y) for x, y in coords[0].tolist()] for c in range(2)]])
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_uncertain_points_are_the_most_uncertain_candidates_when_importance_is_one():
    logits = torch.linspace(-3, 3, 32).expand(2, 1, 16, 32).contiguous()  # uncertainty peaks at x = 0.5
    torch.manual_seed(7)
    points = get_uncertain_point_coords_with_randomness(logits, calculate_uncertainty, 20, 4.0, 1.0)
    torch.manual_seed(7)
    candidates = torch.rand(2, 80, 2)  # the documented first draw
    assert points.shape == (2, 20, 2)
    uncertainty = calculate_uncertainty(point_sample(logits, candidates))[:, 0]
    for b in range(2):
        chosen = {tuple(p) for p in points[b].tolist()}
        best = {tuple(candidates[b, i].tolist()) for i in uncertainty[b].topk(20).indices}
        assert chosen == best
        assert (points[b, :, 0] - 0.5).abs().max() < (candidates[b, :, 0] - 0.5).abs().max()


def test_importance_ratio_splits_uncertain_and_uniform_points():
    logits = torch.linspace(-3, 3, 32).expand(1, 1, 16, 32).contiguous()
    torch.manual_seed(0)
    points = get_uncertain_point_coords_with_randomness(logits, calculate_uncertainty, 100, 3.0, 0.75)
    assert points.shape == (1, 100, 2) and points.min() >= 0 and points.max() <= 1
    # the 75 importance points hug x = 0.5 far more tightly than the 25 uniform ones
    assert (points[0, :75, 0] - 0.5).abs().mean() < 0.5 * (points[0, 75:, 0] - 0.5).abs().mean()
    with pytest.raises(ValueError, match="importance_sample_ratio"):
        get_uncertain_point_coords_with_randomness(logits, calculate_uncertainty, 10, 3.0, 1.5)
