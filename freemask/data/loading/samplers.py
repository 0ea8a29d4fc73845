"""Batch samplers for training (infinite, resumable) and a sharding sampler for inference.

Training samplers build each GLOBAL batch first — a pure function of (seed, global batch number) — and hand rank
``r`` its slice ``[r*b : (r+1)*b]`` of it (``b = global_batch_size / world_size``). Hence:

* the union over ranks of one iteration's batches is the batch a single process would draw, whatever the world size;
* starting at iteration ``k`` (``--resume``) jumps straight to global batch ``k`` in O(1), without replaying the
  ``k`` earlier batches, and yields exactly what an uninterrupted run yields from ``k`` on;
* every item carries an augmentation seed derived from (seed, global batch number, position in the batch), so the
  mapper's random crop/flip/colour draws are reproduced too, in any worker process.

A rank's batch is a list of ``(dataset_index, aug_seed)`` tuples; ``dataset_index`` indexes the concatenation of
the training datasets' records (for the joint sampler: all real datasets first, then all synthetic ones).
"""

from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
from torch.utils.data import Sampler

from ...config import ConfigError
from ...utils import comm

__all__ = ["TrainingBatchSampler", "JointBatchSampler", "InferenceSampler", "synthetic_positions"]

# Tags keep the seed sequences of different uses apart (entropy lists all have the same length, 4).
_TAG_AUG = 0
_TAG_STREAM = 1


class _ShuffledStream:
    """An infinite stream over ``sum(size_i * repeat_i)`` items, reshuffled every epoch, with O(1) random access.

    Item ``k`` of the stream is element ``k % n`` of epoch ``k // n``'s permutation, where epoch ``e`` is shuffled
    by a generator seeded with (seed, stream id, e). Only the most recently used epoch's permutation is kept.
    """

    def __init__(self, sizes: Sequence[int], repeat_factors: Sequence[int], offset: int, seed: int, stream_id: int):
        base = []
        start = offset
        for size, repeat in zip(sizes, repeat_factors):
            base.append(np.tile(np.arange(start, start + size, dtype=np.int64), repeat))
            start += size
        self._base = np.concatenate(base)
        self._seed = seed
        self._stream_id = stream_id
        self._epoch = -1
        self._order = self._base

    def __len__(self) -> int:
        """Items per epoch (with repeat factors)."""
        return len(self._base)

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            rng = np.random.default_rng([self._seed, _TAG_STREAM, self._stream_id, epoch])
            self._order = self._base[rng.permutation(len(self._base))]
            self._epoch = epoch
        return self._order

    def items(self, start: int, count: int) -> List[int]:
        """Dataset indices of stream items ``start .. start + count - 1`` (may straddle epochs)."""
        n = len(self._base)
        out: List[int] = []
        k = start
        while len(out) < count:
            epoch, pos = divmod(k, n)
            take = min(count - len(out), n - pos)
            out.extend(int(i) for i in self._permutation(epoch)[pos : pos + take])
            k += take
        return out


def synthetic_positions(global_batch_size: int, ratio: float) -> List[bool]:
    """Which positions of a global batch hold synthetic items: exactly ``round(ratio * B)`` of them, spread evenly.

    Position ``j`` is synthetic iff ``floor((j+1)*m/B) > floor(j*m/B)`` with ``m = round(ratio*B)`` (half rounds
    up); the sum telescopes to ``m``. Spreading them evenly gives every rank's contiguous slice its share
    (B=8, ratio 0.5: positions 1, 3, 5, 7 -> two per rank on 2 ranks).
    """
    B = global_batch_size
    m = int(np.floor(ratio * B + 0.5))
    return [((j + 1) * m) // B > (j * m) // B for j in range(B)]


def _check_sizes(sizes: Sequence[int], repeat_factors: Optional[Sequence[int]], what: str) -> List[int]:
    """Validate one stream's dataset sizes and repeat factors; returns the repeat factors (default 1 each)."""
    if len(sizes) == 0 or sum(sizes) == 0:
        raise ValueError(
            f"the {what} training set is empty (dataset sizes {list(sizes)}); check DATASETS and its files"
        )
    if any(s < 0 for s in sizes):
        raise ValueError(f"{what} dataset sizes must be non-negative, got {list(sizes)}")
    if repeat_factors is None:
        return [1] * len(sizes)
    if len(repeat_factors) != len(sizes) or any(int(r) != r or r < 1 for r in repeat_factors):
        raise ConfigError(
            f"{what} repeat factors {list(repeat_factors)} must be one integer >= 1 per dataset ({len(sizes)} datasets)"
        )
    return [int(r) for r in repeat_factors]


class _GlobalBatchSampler(Sampler):
    """Infinite iteration over global batches, rank slicing and augmentation seeds; subclasses choose the indices."""

    def __init__(
        self, global_batch_size: int, seed: int, start_iter: int, rank: Optional[int], world_size: Optional[int]
    ) -> None:
        world_size = comm.get_world_size() if world_size is None else world_size
        rank = comm.get_rank() if rank is None else rank
        if global_batch_size < 1 or world_size < 1 or global_batch_size % world_size != 0:
            raise ConfigError(
                f"SOLVER.IMS_PER_BATCH ({global_batch_size}) must be a positive multiple of the number of processes "
                f"({world_size})"
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside 0 .. {world_size - 1}")
        if seed < 0 or start_iter < 0:
            raise ValueError(f"seed ({seed}) and start_iter ({start_iter}) must be non-negative")
        self.global_batch_size = global_batch_size
        self.batch_size = global_batch_size // world_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.start_iter = start_iter

    def global_indices(self, batch: int) -> List[int]:
        """Dataset indices of global batch number ``batch`` (length ``global_batch_size``)."""
        raise NotImplementedError

    def aug_seeds(self, batch: int) -> List[int]:
        """One 64-bit augmentation seed per position of global batch ``batch``."""
        return [
            int(np.random.SeedSequence([self.seed, _TAG_AUG, batch, j]).generate_state(1, np.uint64)[0])
            for j in range(self.global_batch_size)
        ]

    def global_batch(self, batch: int) -> List[Tuple[int, int]]:
        """The whole global batch ``batch`` as ``(dataset_index, aug_seed)`` pairs, before rank slicing."""
        return list(zip(self.global_indices(batch), self.aug_seeds(batch)))

    def __iter__(self) -> Iterator[List[Tuple[int, int]]]:
        lo, hi = self.rank * self.batch_size, (self.rank + 1) * self.batch_size
        batch = self.start_iter
        while True:
            yield self.global_batch(batch)[lo:hi]
            batch += 1


class TrainingBatchSampler(_GlobalBatchSampler):
    """Plain mode: all training sets concatenated (each repeated ``repeat_factors[i]`` times), shuffled per epoch.

    Global item ``k`` (batch ``k // B``, position ``k % B``) is item ``k % n`` of epoch ``k // n``, ``n`` being the
    epoch length ``sum(sizes[i] * repeat_factors[i])``; epochs run on across batch boundaries.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        global_batch_size: int,
        *,
        repeat_factors: Optional[Sequence[int]] = None,
        seed: int = 0,
        start_iter: int = 0,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
    ) -> None:
        super().__init__(global_batch_size, seed, start_iter, rank, world_size)
        repeats = _check_sizes(sizes, repeat_factors, "plain")
        self.stream = _ShuffledStream(sizes, repeats, offset=0, seed=seed, stream_id=0)

    def global_indices(self, batch: int) -> List[int]:
        return self.stream.items(batch * self.global_batch_size, self.global_batch_size)


class JointBatchSampler(_GlobalBatchSampler):
    """Joint mode: every global batch holds exactly ``round(ratio * B)`` synthetic items at evenly spread positions.

    Real and synthetic items come from two independent infinite shuffled streams (real indices
    ``0 .. sum(real_sizes)-1``, synthetic indices after them), so the smaller set is over-sampled to the ratio —
    the release's "real x11, concatenated, shuffled" made exact per batch instead of in expectation. Global batch
    ``g`` takes real-stream items ``g*(B-m) ..`` and synthetic-stream items ``g*m ..``.
    """

    def __init__(
        self,
        real_sizes: Sequence[int],
        syn_sizes: Sequence[int],
        ratio: float,
        global_batch_size: int,
        *,
        real_repeat_factors: Optional[Sequence[int]] = None,
        syn_repeat_factors: Optional[Sequence[int]] = None,
        seed: int = 0,
        start_iter: int = 0,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
    ) -> None:
        super().__init__(global_batch_size, seed, start_iter, rank, world_size)
        if not 0.0 < ratio < 1.0:
            raise ConfigError(f"DATALOADER.SYN_RATIO must be in (0, 1) for joint real+synthetic batches, got {ratio}")
        self.positions = synthetic_positions(global_batch_size, ratio)
        self.num_syn = sum(self.positions)
        if self.num_syn in (0, global_batch_size):
            raise ConfigError(
                f"DATALOADER.SYN_RATIO {ratio} x SOLVER.IMS_PER_BATCH {global_batch_size} gives {self.num_syn} "
                f"synthetic images per batch; choose a ratio leaving both real and synthetic images in every batch"
            )
        self.num_real = global_batch_size - self.num_syn
        self.ratio = ratio
        real_repeats = _check_sizes(real_sizes, real_repeat_factors, "real")
        syn_repeats = _check_sizes(syn_sizes, syn_repeat_factors, "synthetic")
        self.real = _ShuffledStream(real_sizes, real_repeats, offset=0, seed=seed, stream_id=1)
        self.syn = _ShuffledStream(syn_sizes, syn_repeats, offset=sum(real_sizes), seed=seed, stream_id=2)

    def global_indices(self, batch: int) -> List[int]:
        real = iter(self.real.items(batch * self.num_real, self.num_real))
        syn = iter(self.syn.items(batch * self.num_syn, self.num_syn))
        return [next(syn) if is_syn else next(real) for is_syn in self.positions]


class InferenceSampler(Sampler):
    """Contiguous shard ``rank`` of ``range(size)``: no padding, every index on exactly one rank.

    The first ``size % world_size`` ranks get one extra index, so shard lengths differ by at most one.
    """

    def __init__(self, size: int, rank: Optional[int] = None, world_size: Optional[int] = None) -> None:
        if size < 0:
            raise ValueError(f"dataset size must be non-negative, got {size}")
        world_size = comm.get_world_size() if world_size is None else world_size
        rank = comm.get_rank() if rank is None else rank
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside 0 .. {world_size - 1}")
        base, extra = divmod(size, world_size)
        self.begin = rank * base + min(rank, extra)
        self.end = self.begin + base + (1 if rank < extra else 0)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.begin, self.end))

    def __len__(self) -> int:
        return self.end - self.begin
