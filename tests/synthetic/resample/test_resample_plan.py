"""Copy counts, ranking and seed drawing of hardness-aware re-sampling (freemask.synthetic.resample.plan)."""

import numpy as np
import pytest

from freemask.synthetic.resample.plan import (
    copies_for_rank,
    copy_counts,
    draw_seeds,
    hardness_ranks,
    plan_resampling,
)


@pytest.mark.parametrize("n", [1000, 20210])
def test_copy_count_at_first_middle_and_last_rank(n):
    assert copies_for_rank(1, n) == 1  # 1 + round(20 / n), n >= 41: the easiest mask keeps one copy
    assert copies_for_rank(n // 2, n) == 11  # 1 + round(10)
    assert copies_for_rank(n, n) == 20  # min(1 + 20, 20)
    counts = copy_counts(n)
    assert (counts[0], counts[n // 2 - 1], counts[-1]) == (1, 11, 20)


def test_copy_counts_round_halves_to_even():
    # rank 1 of 8: 1/8*20 = 2.5 -> 2 (not 3); rank 1 of 40: 0.5 -> 0; rank 3 of 8: 7.5 -> 8
    assert copies_for_rank(1, 8) == 3
    assert copies_for_rank(1, 40) == 1
    assert copies_for_rank(3, 8) == 9
    assert copy_counts(8).tolist() == [3, 6, 9, 11, 13, 16, 19, 20]


@pytest.mark.parametrize("max_copies", [1, 3, 20])
def test_vectorised_counts_equal_the_scalar_formula(max_copies):
    for n in list(range(1, 120)) + [997, 20210]:
        expected = [copies_for_rank(i, n, max_copies) for i in range(1, n + 1)]
        assert copy_counts(n, max_copies).tolist() == expected
        assert min(expected) >= 1 and max(expected) == max_copies
        assert expected == sorted(expected)  # harder never gets fewer


def test_copies_for_rank_rejects_bad_rank():
    with pytest.raises(ValueError, match="rank"):
        copies_for_rank(0, 5)


def test_ranks_ascending_with_ties_by_name():
    names = ["d", "a", "c", "b"]
    ranks = hardness_ranks(names, np.array([0.5, 0.9, 0.1, 0.5]))
    assert ranks.tolist() == [3, 4, 1, 2]  # c (0.1), then the tie b before d, then a


def test_draw_seeds_without_replacement_from_available():
    available = [[42, 43, 44, 45], [50], [], [1, 2, 3]]
    chosen = draw_seeds(available, np.array([2, 3, 4, 3]), seed=0)
    assert [len(c) for c in chosen] == [2, 1, 0, 3]
    for picked, seeds in zip(chosen, available):
        assert set(picked) <= set(seeds) and len(set(picked)) == len(picked) and picked == sorted(picked)


def test_draw_seeds_is_reproducible_and_covers_all_seeds():
    available = [list(range(42, 62))] * 500
    counts = np.full(500, 5)
    first = draw_seeds(available, counts, seed=7)
    assert first == draw_seeds(available, counts, seed=7)
    assert first != draw_seeds(available, counts, seed=8)
    frequency = np.bincount([s - 42 for c in first for s in c], minlength=20)
    assert frequency.min() > 0.5 * frequency.mean()  # roughly uniform: 125 expected per seed


def test_plan_counts_short_and_missing_masks():
    hardness = {f"m{i}": float(i) for i in range(8)}
    seeds = {f"m{i}": [42, 43, 44] for i in range(7)}  # m7, the hardest, has none
    seeds["m0"] = [42]
    plan = plan_resampling(hardness, seeds, max_copies=20, seed=0)
    assert plan.names == sorted(hardness)
    assert plan.wanted.tolist() == copy_counts(8).tolist()  # hardness order equals name order here
    assert plan.without_seeds() == ["m7"]
    assert plan.short_of_seeds() == [f"m{i}" for i in range(7)]  # every k >= 3 exceeds the seeds there
    assert [len(c) for c in plan.chosen] == [1, 3, 3, 3, 3, 3, 3, 0]
    assert plan.copies_histogram() == {0: 1, 1: 1, 3: 6}
    assert plan.total_pairs == 19
    assert sum(plan.wanted_histogram().values()) == 8


def test_plan_gives_hard_masks_more_copies():
    rng = np.random.default_rng(0)
    hardness = {f"r{i:03d}": float(h) for i, h in enumerate(rng.random(200))}
    plan = plan_resampling(hardness, {n: list(range(42, 62)) for n in hardness}, seed=1)
    order = np.argsort(plan.hardness)
    copies = np.array([len(c) for c in plan.chosen])[order]
    assert copies[0] == 1 and copies[-1] == 20 and np.all(np.diff(copies) >= 0)


def test_plan_rejects_empty_input_and_bad_max():
    with pytest.raises(ValueError, match="no real masks"):
        plan_resampling({}, {})
    with pytest.raises(ValueError, match="max copies"):
        plan_resampling({"a": 1.0}, {"a": [42]}, max_copies=0)
