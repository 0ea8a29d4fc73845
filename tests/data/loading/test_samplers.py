"""Training batch samplers (plain and joint) and the inference sampler."""

import itertools
from collections import Counter

import pytest

from freemask.data.loading.samplers import (
    InferenceSampler,
    JointBatchSampler,
    TrainingBatchSampler,
    synthetic_positions,
)


def take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def joint(rank=0, world_size=1, seed=3, start_iter=0, real=(5, 7), syn=(40,), ratio=0.5, batch=8):
    return JointBatchSampler(
        list(real), list(syn), ratio, batch, seed=seed, start_iter=start_iter, rank=rank, world_size=world_size
    )


# ------------------------------------------------------------------------------------------------------ joint mode
def test_joint_batch_composition_across_two_ranks():
    num_real = 12  # real indices 0..11, synthetic 12..51
    full = take(joint(), 50)
    ranks = [take(joint(rank=r, world_size=2), 50) for r in range(2)]
    for g in range(50):
        assert ranks[0][g] + ranks[1][g] == full[g]
        assert sum(i >= num_real for i, _ in full[g]) == 4
        for r in range(2):
            assert len(ranks[r][g]) == 4
            assert sum(i >= num_real for i, _ in ranks[r][g]) == 2


def test_joint_oversamples_real_set_and_covers_it():
    batches = take(joint(), 50)  # 200 real draws from 12 real images, 200 synthetic from 40
    counts = Counter(i for batch in batches for i, _ in batch)
    real = [counts[i] for i in range(12)]
    syn = [counts[i] for i in range(12, 52)]
    assert min(real) > 0 and set(counts) == set(range(52))
    # Each stream is a sequence of full shuffled epochs: real 200 = 16 epochs + 8, synthetic 200 = 5 epochs.
    assert sum(real) == sum(syn) == 200
    assert min(real) >= 16 and max(real) <= 17
    assert set(syn) == {5}
    # Concatenation would give each image the same share; here each real image is drawn >3x more than a synthetic one.
    assert min(real) > 3 * max(syn)


def test_joint_is_deterministic_per_seed():
    assert take(joint(seed=3), 10) == take(joint(seed=3), 10)
    a, b = take(joint(seed=3), 10), take(joint(seed=4), 10)
    assert [i for batch in a for i, _ in batch] != [i for batch in b for i, _ in batch]
    assert [s for batch in a for _, s in batch] != [s for batch in b for _, s in batch]


@pytest.mark.parametrize("batch", [1, 2, 3, 8, 16, 17])
@pytest.mark.parametrize("ratio", [0.0, 0.1, 0.25, 0.35, 0.5, 0.66, 0.75, 0.9, 0.99])
def test_synthetic_positions_count_and_spread(batch, ratio):
    positions = synthetic_positions(batch, ratio)
    expected = int(ratio * batch + 0.5)
    assert sum(positions) == expected
    # Evenly spread: any window of w positions holds floor or ceil of w * m / B synthetic items.
    for w in range(1, batch + 1):
        for start in range(batch - w + 1):
            assert abs(sum(positions[start : start + w]) - w * expected / batch) < 1 + 1e-9


def test_joint_resume_matches_uninterrupted():
    full = take(joint(rank=1, world_size=2), 30)
    assert take(joint(rank=1, world_size=2, start_iter=17), 5) == full[17:22]


# ------------------------------------------------------------------------------------------------------ plain mode
def plain(seed=0, start_iter=0, rank=0, world_size=1, sizes=(3, 5), repeats=(4, 1), batch=4):
    return TrainingBatchSampler(
        list(sizes), batch, repeat_factors=repeats, seed=seed, start_iter=start_iter, rank=rank, world_size=world_size
    )


def test_plain_epoch_respects_repeat_factors_and_reshuffles():
    # Epoch length 3*4 + 5*1 = 17; a batch of 17 is exactly one epoch.
    epochs = [[i for i, _ in batch] for batch in take(plain(batch=17), 3)]
    for epoch in epochs:
        assert Counter(epoch) == Counter({0: 4, 1: 4, 2: 4, 3: 1, 4: 1, 5: 1, 6: 1, 7: 1})
    assert epochs[0] != epochs[1] != epochs[2]


def test_plain_epochs_run_across_batch_boundaries():
    items = [i for batch in take(plain(batch=4), 17) for i, _ in batch]  # 68 items = 4 epochs of 17
    for e in range(4):
        assert Counter(items[17 * e : 17 * (e + 1)])[0] == 4


def test_plain_resume_and_ranks():
    full = take(plain(batch=4), 12)
    assert take(plain(batch=4, start_iter=9), 3) == full[9:12]
    halves = [take(plain(batch=4, rank=r, world_size=2), 12) for r in range(2)]
    assert [a + b for a, b in zip(*halves)] == full


# ------------------------------------------------------------------------------------------------------ aug seeds
def test_aug_seeds_distinct_and_stable_across_resume():
    batches = take(joint(), 40)
    seeds = [s for batch in batches for _, s in batch]
    assert len(set(seeds)) == len(seeds)
    resumed = take(joint(start_iter=30), 10)
    assert [s for batch in resumed for _, s in batch] == seeds[30 * 8 :]
    # Same position of the same global batch -> same seed, whichever sampler class drew the index.
    assert [s for _, s in take(plain(seed=3, batch=8), 1)[0]] == [s for _, s in batches[0]]


# ------------------------------------------------------------------------------------------------------ inference
@pytest.mark.parametrize("size,world_size", [(10, 3), (2, 4), (0, 2), (7, 1), (13, 5)])
def test_inference_sampler_covers_every_index_once(size, world_size):
    shards = [list(InferenceSampler(size, rank=r, world_size=world_size)) for r in range(world_size)]
    assert [i for shard in shards for i in shard] == list(range(size))  # contiguous, in rank order, no padding
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert [len(InferenceSampler(size, r, world_size)) for r in range(world_size)] == list(map(len, shards))


# ------------------------------------------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    "build,match",
    [
        (lambda: joint(ratio=1.0), "SYN_RATIO"),
        (lambda: joint(ratio=-0.1), "SYN_RATIO"),
        (lambda: joint(ratio=0.0), "SYN_RATIO"),
        (lambda: joint(ratio=0.01), "synthetic images per batch"),
        (lambda: joint(batch=6, world_size=4), "IMS_PER_BATCH"),
        (lambda: plain(batch=6, world_size=4), "IMS_PER_BATCH"),
        (lambda: joint(real=()), "real training set is empty"),
        (lambda: joint(syn=(0,)), "synthetic training set is empty"),
        (lambda: plain(sizes=(0, 0)), "training set is empty"),
        (lambda: plain(repeats=(1,)), "repeat factors"),
        (lambda: plain(repeats=(0, 1)), "repeat factors"),
        (lambda: plain(rank=2, world_size=2), "rank"),
    ],
)
def test_invalid_arguments_raise_one_line_value_error(build, match):
    with pytest.raises(ValueError, match=match) as info:
        build()
    assert "\n" not in str(info.value)
