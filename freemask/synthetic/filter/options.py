"""What the user chooses for one filter run: the defaults and the check the command line shares with the library.

Torch-free, so ``tools/filter_syn.py --help`` and its early checks show and test the same values without loading any
model code.
"""

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from ..loss_histograms import HELDOUT_NAME, histograms_path

if TYPE_CHECKING:
    import torch

# A pixel is noise when its loss exceeds this many times its class's mean loss on the real images (the paper's value).
TOLERANCE_MARGIN = 1.25
BATCH_SIZE = 8
MEAN_MARGIN, QUANTILE = "mean-margin", "quantile"
RULES = (MEAN_MARGIN, QUANTILE)  # see rule.py; the first, FreeMask's own, is the default


def check_tolerance_margin(margin: float, name: str = "the tolerance margin") -> None:
    """ValueError unless ``margin`` is positive (NaN is not); ``name`` is how the message names it."""
    if not margin > 0:
        raise ValueError(f"{name} must be positive, got {margin}")


def check_clean_rate(rate: float, name: str = "the clean rate") -> None:
    """ValueError unless ``0 <= rate < 1`` (the share of clean real pixels the quantile rule may filter)."""
    if not 0 <= rate < 1:
        raise ValueError(f"{name} must be in [0, 1), got {rate}")


def check_boundary_band(band: int, name: str = "the boundary band") -> None:
    if band < 0:
        raise ValueError(f"{name} must be 0 (off) or a number of pixels, got {band}")


@dataclass(frozen=True)
class FilterOptions:
    """What the user chose on the command line (see tools/filter_syn.py for each flag). ``clean_rate`` is set with
    the quantile rule only; ``boundary_band`` px around class boundaries are never filtered (0: off);
    ``diagnostic`` measures what the rule would remove from the real images; ``per_image_stats`` also writes one
    line of statistics per synthetic pair (a file that grows with the pair count, so only when asked);
    ``start_method`` starts the loader workers (DATALOADER.START_METHOD; "" = the platform's choice)."""

    output: str
    rule: str = MEAN_MARGIN
    tolerance_margin: float = TOLERANCE_MARGIN
    clean_rate: Optional[float] = None
    boundary_band: int = 0
    diagnostic: bool = True
    batch_size: int = BATCH_SIZE
    num_workers: int = 4
    start_method: str = ""
    amp_dtype: Optional["torch.dtype"] = None
    class_loss: Optional[str] = None
    overwrite: bool = False
    progress: bool = True
    writer_threads: int = 4
    per_image_stats: bool = False

    @property
    def parent(self) -> str:
        return os.path.dirname(os.path.abspath(self.output))

    @property
    def class_loss_path(self) -> str:
        return self.class_loss or os.path.join(self.parent, "class_loss.json")

    @property
    def histograms_path(self) -> str:
        """The real training split's loss histograms, beside the class-loss file (read with --class-loss)."""
        return histograms_path(self.class_loss_path)

    @property
    def heldout_histograms_path(self) -> str:
        return os.path.join(self.parent, HELDOUT_NAME)

    @property
    def stats_path(self) -> str:
        return os.path.join(self.parent, "filter_stats.json")

    @property
    def per_image_stats_path(self) -> str:
        return os.path.join(self.parent, "filter_stats_per_image.jsonl")

    @property
    def precision(self) -> str:
        """``float32`` or the autocast dtype's name, as recorded in the output's settings."""
        return str(self.amp_dtype).replace("torch.", "") if self.amp_dtype is not None else "float32"
