import itertools

import pytest
import torch
import torch.nn.functional as F

from freemask.modeling.matcher import HungarianMatcher


def brute_force(cost: torch.Tensor):
    """Minimum-total-cost one-to-one assignment by enumeration: (query_idx, target_idx) sorted by query."""
    num_queries, num_targets = cost.shape
    best, best_pairs = float("inf"), None
    if num_queries >= num_targets:
        candidates = (
            [(q, t) for t, q in enumerate(p)] for p in itertools.permutations(range(num_queries), num_targets)
        )
    else:
        candidates = (
            [(q, t) for q, t in enumerate(p)] for p in itertools.permutations(range(num_targets), num_queries)
        )
    for pairs in candidates:
        total = sum(cost[q, t].item() for q, t in pairs)
        if total < best:
            best, best_pairs = total, sorted(pairs)
    return [q for q, _ in best_pairs], [t for _, t in best_pairs], best


def pixel_centres(height: int, width: int) -> torch.Tensor:
    """(H*W, 2) points at the pixel centres in row-major order, where bilinear sampling is exact."""
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    return torch.stack([(xs.flatten() + 0.5) / width, (ys.flatten() + 0.5) / height], dim=1)


def test_cost_matrix_is_the_weighted_sum_of_class_bce_and_dice_costs():
    torch.manual_seed(0)
    num_queries, num_classes, height, width = 4, 5, 6, 7
    logits = torch.randn(num_queries, num_classes + 1)
    masks = torch.randn(num_queries, height, width) * 3
    labels = torch.tensor([3, 0, 3])
    tgt = torch.rand(3, height, width) > 0.5
    matcher = HungarianMatcher(cost_class=2.0, cost_mask=5.0, cost_dice=5.0)
    cost = matcher.cost_matrix(logits, masks, labels, tgt, pixel_centres(height, width))

    expected = torch.empty(num_queries, 3)
    for q in range(num_queries):
        x = masks[q].flatten()
        for t in range(3):
            y = tgt[t].flatten().float()
            cls = -logits[q].softmax(-1)[labels[t]]
            bce = F.binary_cross_entropy_with_logits(x, y)
            p = x.sigmoid()
            dice = 1 - (2 * (p * y).sum() + 1) / (p.sum() + y.sum() + 1)
            expected[q, t] = 2.0 * cls + 5.0 * bce + 5.0 * dice
    assert cost.dtype == torch.float32
    torch.testing.assert_close(cost, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("num_queries,num_targets", [(5, 4), (5, 1), (4, 4), (3, 2), (2, 4)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matcher_finds_the_brute_force_optimum(num_queries, num_targets, seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(1, num_queries, 4, generator=g) * 2
    masks = torch.randn(1, num_queries, 8, 8, generator=g) * 4
    target = {
        "labels": torch.randint(0, 3, (num_targets,), generator=g),
        "masks": torch.rand(num_targets, 16, 16, generator=g) > 0.5,  # targets at a finer resolution than predictions
    }
    matcher = HungarianMatcher(num_points=50)
    torch.manual_seed(100 + seed)
    ((query_idx, target_idx),) = matcher({"pred_logits": logits, "pred_masks": masks}, [target])
    # The matcher's documented points for a one-image batch are the first torch.rand(num_points, 2) after seeding,
    # so this is exactly the cost it minimised.
    torch.manual_seed(100 + seed)
    cost = matcher.cost_matrix(logits[0], masks[0], target["labels"], target["masks"], torch.rand(50, 2))
    exp_q, exp_t, best = brute_force(cost)
    assert (query_idx.tolist(), target_idx.tolist()) == (exp_q, exp_t)
    assert cost[query_idx, target_idx].sum().item() == pytest.approx(best, abs=1e-5)


def test_empty_targets_give_empty_int64_indices_and_others_are_in_range():
    torch.manual_seed(0)
    num_queries = 6
    outputs = {"pred_logits": torch.randn(3, num_queries, 5), "pred_masks": torch.randn(3, num_queries, 8, 8)}
    targets = [
        {"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 8, 8, dtype=torch.bool)},
        {"labels": torch.tensor([1, 3, 0]), "masks": torch.rand(3, 8, 8) > 0.5},
        {"labels": torch.tensor([2]), "masks": torch.rand(1, 32, 32) > 0.5},
    ]
    indices = HungarianMatcher(num_points=40)(outputs, targets)
    assert len(indices) == 3
    for (query_idx, target_idx), target in zip(indices, targets):
        num_targets = len(target["labels"])
        assert query_idx.dtype == torch.int64 and target_idx.dtype == torch.int64
        assert len(query_idx) == len(target_idx) == min(num_queries, num_targets)
        assert sorted(target_idx.tolist()) == list(range(num_targets))  # every target gets exactly one query
        assert len(set(query_idx.tolist())) == len(query_idx)
        assert all(0 <= q < num_queries for q in query_idx.tolist())
        assert query_idx.tolist() == sorted(query_idx.tolist())


def test_cost_is_computed_in_float32_under_bf16_autocast():
    torch.manual_seed(0)
    logits, masks = torch.randn(4, 3), torch.randn(4, 8, 8) * 4
    labels, tgt, points = torch.tensor([0, 1]), torch.rand(2, 8, 8) > 0.5, torch.rand(20, 2)
    matcher = HungarianMatcher()
    reference = matcher.cost_matrix(logits, masks, labels, tgt, points)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cost = matcher.cost_matrix(logits, masks, labels, tgt, points)
    assert cost.dtype == torch.float32
    torch.testing.assert_close(cost, reference)  # bf16 matmuls would be off by ~1e-2


def test_all_zero_costs_are_rejected():
    with pytest.raises(ValueError, match="all costs are 0"):
        HungarianMatcher(cost_class=0, cost_mask=0, cost_dice=0)
