"""How well filtering found the defects planted in the toy synthetic set: pixel precision and recall.

The toy generator (``freemask/toy/generator.py``) writes, for every synthetic image, ``defects/<stem>.png`` with
1 where the image disagrees with its mask. Filtering is scored against those maps on the pixels that were labelled in
the original synthetic mask: a pixel already ignored there can be neither filtered nor a defect, so counting it would
only dilute both figures. Random filtering of the same fraction of pixels would reach a precision equal to the
defect base rate (defect pixels / labelled pixels), the figure a real filter must beat.

Where the filter's false positives lie is counted too: clean pixels it removed within ``BOUNDARY_RADIUS`` pixels of
another value of the original mask, against the share of all labelled pixels that lie there. The paper's appendix
shows filtering concentrated on boundaries; this says whether the toy run agrees.
"""

import os
from collections.abc import Iterable
from dataclasses import astuple, dataclass

import cv2
import numpy as np

from ..commands import hint
from ..errors import UserError

BOUNDARY_RADIUS = 2  # "near a boundary": another value of the original mask within this many pixels (Chebyshev)


class DefectScoreError(UserError, ValueError):
    """Masks that cannot be compared; the message names the files and the fix."""


@dataclass(frozen=True)
class DefectCounts:
    """Pixel counts over the labelled pixels of the original masks; summed over images with ``+``."""

    labelled: int = 0  # labelled in the original mask
    filtered: int = 0  # labelled there, ignored in the filtered mask
    defects: int = 0  # labelled there and marked in the defect map
    hits: int = 0  # filtered and a defect
    near_boundary: int = 0  # labelled and near a boundary
    clean_filtered_near_boundary: int = 0  # filtered, not a defect, and near a boundary

    def __add__(self, other: "DefectCounts") -> "DefectCounts":
        return DefectCounts(*(a + b for a, b in zip(astuple(self), astuple(other))))

    @property
    def precision(self) -> float:
        """Share of filtered pixels that are defects (NaN when nothing was filtered)."""
        return self.hits / self.filtered if self.filtered else float("nan")

    @property
    def recall(self) -> float:
        """Share of defect pixels that were filtered (NaN when there is no defect)."""
        return self.hits / self.defects if self.defects else float("nan")

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r > 0 else float("nan")

    @property
    def filtered_fraction(self) -> float:
        return self.filtered / self.labelled if self.labelled else float("nan")

    @property
    def clean_filtered_boundary_share(self) -> float:
        """Share of the filtered non-defect pixels that lie near a boundary (NaN when there are none)."""
        clean = self.filtered - self.hits
        return self.clean_filtered_near_boundary / clean if clean else float("nan")

    @property
    def boundary_share(self) -> float:
        """Share of labelled pixels near a boundary: what the previous figure would be if boundaries did not matter."""
        return self.near_boundary / self.labelled if self.labelled else float("nan")

    @property
    def base_rate(self) -> float:
        """Share of labelled pixels that are defects: the expected precision of filtering at random."""
        return self.defects / self.labelled if self.labelled else float("nan")


def count_defect_pixels(
    original: np.ndarray, filtered: np.ndarray, defects: np.ndarray, ignore_label: int
) -> DefectCounts:
    """Counts for one image: ``original`` and ``filtered`` (H, W) label maps with ``ignore_label`` for unlabelled
    pixels (0 in raw ADE20K-style masks such as the toy set's, 255 in prepared ones), ``defects`` (H, W), non-zero
    where a defect was planted."""
    if not original.shape == filtered.shape == defects.shape:
        raise DefectScoreError(
            f"shapes differ: original {original.shape}, filtered {filtered.shape}, defects {defects.shape}"
        )
    labelled = original != ignore_label
    removed = labelled & (filtered == ignore_label)
    planted = labelled & (defects != 0)
    near = labelled & near_boundary(original)
    return DefectCounts(
        int(labelled.sum()),
        int(removed.sum()),
        int(planted.sum()),
        int((removed & planted).sum()),
        int(near.sum()),
        int((removed & ~planted & near).sum()),
    )


def near_boundary(mask: np.ndarray, radius: int = BOUNDARY_RADIUS) -> np.ndarray:
    """(H, W) bool: another value of ``mask`` (the ignore value included) lies within ``radius`` pixels. The image
    border is not a boundary (OpenCV pads dilation and erosion with neutral values)."""
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    return cv2.dilate(mask, kernel) != cv2.erode(mask, kernel)


def _read_mask(path: str) -> np.ndarray:
    mask = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise DefectScoreError(f"cannot read {path}; regenerate the toy dataset or re-run {hint('filter')}")
    return mask


def score_defect_folders(
    original_dir: str, filtered_dir: str, defects_dir: str, ignore_label: int, names: Iterable[str] = ()
) -> DefectCounts:
    """Counts summed over the masks ``names`` (default: every ``.png`` in ``defects_dir``), each read from the three
    folders under the same file name."""
    names = sorted(names) or sorted(n for n in os.listdir(defects_dir) if n.endswith(".png"))
    if not names:
        raise DefectScoreError(f"no defect maps (*.png) in {defects_dir}; regenerate the toy dataset")
    total = DefectCounts()
    for name in names:
        paths = [os.path.join(folder, name) for folder in (original_dir, filtered_dir, defects_dir)]
        total += count_defect_pixels(*(_read_mask(p) for p in paths), ignore_label=ignore_label)
    return total
