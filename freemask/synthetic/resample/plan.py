"""Hardness-aware re-sampling: how many synthetic copies each real mask gets, and which seeds.

FreeMask repeats the synthetic images of hard real masks: real masks sorted by hardness ascending, the one at
1-based rank ``i`` of ``N`` gets ``k = min(1 + round(i / N * M), M)`` copies (``M`` = max copies, 20 in the paper),
drawn without replacement from its synthetic seeds. So the easiest masks keep one copy and the hardest ``M``.

Fidelity to the release's ``preprocess/resample.py``:

- ``round`` is Python's built-in on the float ``i / N * M``, which rounds halves to even (``round(0.5) == 0``,
  ``round(2.5) == 2``); numpy's ``rint`` does the same, and the expression is evaluated in the same order, so every
  ``k`` equals the release's.
- ``N`` counts every real mask, including those without synthetic copies.
- Ties in hardness keep file-name order (the release sorted the names, then sorted stably by hardness).
- Seeds are drawn from the seeds that exist for the mask. The release drew ``k`` of the seeds 42..61 and skipped
  the missing files, so with missing seeds it kept fewer than ``k``; we keep ``min(k, available)`` and report the
  masks that had fewer than ``k`` seeds. With all 20 seeds present both give ``k`` copies.
- The draw is seeded (the release used the unseeded global ``random``): the same inputs and ``seed`` give the
  same choice on any machine.
"""

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


def copies_for_rank(rank: int, num_masks: int, max_copies: int = 20) -> int:
    """Copies of the real mask at 1-based hardness ``rank`` among ``num_masks`` (Python ``round``: half to even)."""
    if not 1 <= rank <= num_masks:
        raise ValueError(f"rank must be in 1..{num_masks}, got {rank}")
    return min(1 + round(rank / num_masks * max_copies), max_copies)


def copy_counts(num_masks: int, max_copies: int = 20) -> np.ndarray:
    """``(num_masks,)`` int64 copies for ranks 1..num_masks; equals :func:`copies_for_rank` element by element
    (the same float operations in the same order, and ``np.rint`` rounds halves to even like ``round``)."""
    ranks = np.arange(1, num_masks + 1, dtype=np.float64)
    return np.minimum(1 + np.rint(ranks / num_masks * max_copies).astype(np.int64), max_copies)


def hardness_ranks(names: Sequence[str], hardness: np.ndarray) -> np.ndarray:
    """``(N,)`` 1-based rank of each mask by hardness ascending, ties broken by name."""
    by_name = np.array(sorted(range(len(names)), key=names.__getitem__), dtype=np.int64)
    order = by_name[np.argsort(np.asarray(hardness)[by_name], kind="stable")]
    ranks = np.empty(len(names), dtype=np.int64)
    ranks[order] = np.arange(1, len(names) + 1)
    return ranks


def draw_seeds(available: Sequence[Sequence[int]], counts: np.ndarray, seed: int) -> list[list[int]]:
    """For each mask, ``min(counts[i], len(available[i]))`` of its seeds drawn uniformly without replacement
    (sorted ascending). One random key per (mask, seed) and an argsort per row: vectorised and reproducible."""
    width = max((len(s) for s in available), default=0)
    rng = np.random.default_rng(seed)
    keys = rng.random((len(available), width))
    lengths = np.array([len(s) for s in available], dtype=np.int64)
    keys[np.arange(width)[None, :] >= lengths[:, None]] = np.inf
    order = np.argsort(keys, axis=1, kind="stable")
    chosen = []
    for row, seeds, k in zip(order, available, counts):
        chosen.append(sorted(seeds[j] for j in row[: min(int(k), len(seeds))]))
    return chosen


@dataclass(frozen=True)
class ResamplePlan:
    """The choice for every real mask, in name order: ``wanted[i]`` copies, ``chosen[i]`` seeds."""

    names: list[str]
    hardness: np.ndarray
    ranks: np.ndarray
    wanted: np.ndarray
    available: list[list[int]]
    chosen: list[list[int]]

    @property
    def total_pairs(self) -> int:
        return sum(len(c) for c in self.chosen)

    def copies_histogram(self) -> dict[int, int]:
        """Number of real masks per number of copies chosen (0 for masks without synthetic pairs)."""
        return dict(sorted(Counter(len(c) for c in self.chosen).items()))

    def wanted_histogram(self) -> dict[int, int]:
        """Number of real masks per number of copies their rank asks for (before missing seeds)."""
        return dict(sorted(Counter(int(k) for k in self.wanted).items()))

    def without_seeds(self) -> list[str]:
        """Real masks that have no synthetic pair at all."""
        return [n for n, a in zip(self.names, self.available) if not a]

    def short_of_seeds(self) -> list[str]:
        """Real masks with some synthetic pairs, but fewer than the copies their rank asks for (all were taken)."""
        return [n for n, a, k in zip(self.names, self.available, self.wanted) if 0 < len(a) < k]


def plan_resampling(
    hardness_by_name: Mapping[str, float],
    seeds_by_name: Mapping[str, Sequence[int]],
    max_copies: int = 20,
    seed: int = 0,
) -> ResamplePlan:
    """Rank the real masks ``hardness_by_name`` and draw synthetic seeds from ``seeds_by_name`` (real stem -> the
    seeds that exist; a stem missing there has none). Synthetic stems without a real mask are the caller's
    concern: they have no hardness, so they cannot be ranked."""
    if max_copies < 1:
        raise ValueError(f"max copies must be at least 1, got {max_copies}")
    if not hardness_by_name:
        raise ValueError("no real masks to rank")
    names = sorted(hardness_by_name)
    hardness = np.array([hardness_by_name[n] for n in names], dtype=np.float64)
    ranks = hardness_ranks(names, hardness)
    wanted = copy_counts(len(names), max_copies)[ranks - 1]
    available = [sorted(set(seeds_by_name.get(n, ()))) for n in names]
    chosen = draw_seeds(available, wanted, seed)
    return ResamplePlan(names, hardness, ranks, wanted, available, chosen)
