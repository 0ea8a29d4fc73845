"""The initial noise of a synthetic image, a function of its ``(real stem, seed)`` alone.

FreestyleNet's sampler seeds one global generator per run and draws the noise batch after batch, so an image
depends on its position in the run, the batch size and how many GPUs shared the work. Here every image gets its own
``torch.Generator`` seeded by a stable hash of its name, so ``<stem>_seed_<s>.jpg`` is the same picture whatever the
batch size, the number of ranks, the order of the work or an interruption in between. The noise is drawn on the CPU
in float32 (CUDA generators give other numbers per device model) and moved to the device by the backend.
"""

import hashlib
from typing import Sequence, Tuple

import torch

# Bumped if the derivation ever changes, so an output folder made with the old one refuses to be resumed.
NOISE_VERSION = "sha256(stem NUL seed)[:8] -> torch.Generator(cpu).randn float32 (v1)"


def pair_seed(stem: str, seed: int) -> int:
    """A 63-bit generator seed from ``(stem, seed)``; sha256, not ``hash()``, which differs between processes."""
    digest = hashlib.sha256(f"{stem}\0{int(seed)}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def initial_latents(stem: str, seed: int, shape: Tuple[int, int, int]) -> torch.Tensor:
    """``(C, h, w)`` CPU float32 standard-normal noise of the image ``<stem>_seed_<seed>``."""
    generator = torch.Generator(device="cpu").manual_seed(pair_seed(stem, seed))
    return torch.randn(tuple(shape), generator=generator, dtype=torch.float32)


def batch_latents(pairs: Sequence[Tuple[str, int]], shape: Tuple[int, int, int]) -> torch.Tensor:
    """``(B, C, h, w)`` noise of ``pairs`` ((stem, seed) each), one independent generator per image."""
    return torch.stack([initial_latents(stem, seed, shape) for stem, seed in pairs])
