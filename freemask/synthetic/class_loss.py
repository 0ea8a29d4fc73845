"""``class_loss.json``: the class-wise mean loss of a real-trained model on the real images.

``tools/filter_syn.py`` computes it (pass 1) and ``tools/resample_syn.py`` reads it, so the numbers travel in a file
rather than being pasted between scripts as in the release. Format (UTF-8 JSON)::

    {"format": "freemask.class_loss/1", "dataset": "<name or folder>", "ignore_label": 255,
     "classes": [{"id": 0, "name": "wall", "pixels": 123456, "mean_loss": 0.21}, ...]}

One entry per model class in label order; ``mean_loss`` is null for a class with no real pixel (such a class never
filters anything and adds no hardness). Torch-free, so the readers (re-sampling) load no model code; the filter
computes the sums in :mod:`freemask.synthetic.filter.loss`.
"""

import json
import math
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Type

import numpy as np

from ..commands import hint
from ..errors import UserError
from ..utils.atomic import atomic_write_text

FORMAT = "freemask.class_loss/1"


class ClassLossError(UserError, ValueError):
    """A class-loss file that cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class ClassLoss:
    """Per-class pixel counts and mean losses, indexed by label id."""

    dataset: str
    ignore_label: int
    names: Sequence[str]
    pixels: Sequence[int]
    mean_loss: Sequence[Optional[float]]

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def mean_loss_array(self) -> np.ndarray:
        """Float64 ``(K,)`` means with NaN for classes absent from the real set."""
        return np.array([math.nan if v is None else v for v in self.mean_loss], dtype=np.float64)

    @classmethod
    def from_sums(
        cls, dataset: str, ignore_label: int, names: Sequence[str], loss_sums: np.ndarray, counts: np.ndarray
    ) -> "ClassLoss":
        """Means from per-class loss sums and pixel counts (None where the count is 0)."""
        means: List[Optional[float]] = [float(s / n) if n > 0 else None for s, n in zip(loss_sums, counts)]
        return cls(dataset, int(ignore_label), list(names), [int(n) for n in counts], means)


def write_class_loss(path: str, stats: ClassLoss) -> None:
    """Write ``stats`` to ``path`` atomically (a temporary file in the same folder, then a rename)."""
    data = {
        "format": FORMAT,
        "dataset": stats.dataset,
        "ignore_label": stats.ignore_label,
        "classes": [
            {"id": i, "name": n, "pixels": p, "mean_loss": m}
            for i, (n, p, m) in enumerate(zip(stats.names, stats.pixels, stats.mean_loss))
        ],
    }
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=1))  # no final newline: the format as first released


def read_tagged_json(path: str, format_tag: str, what: str, fix: str, error: Type[UserError]) -> Dict:
    """The JSON object of ``path`` whose ``"format"`` is ``format_tag``; ``error`` (one line naming the file, ``what``
    kind of file it should be, and ``fix``) when it is missing, unreadable or of another kind."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise error(f"{what} file not found: {path}; {fix}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error(f"{path} is not a readable {what} JSON file ({e}); {fix}") from None
    if not isinstance(data, dict) or data.get("format") != format_tag:
        raise error(f'{path} is not a {what} file (expected "format": "{format_tag}"); {fix}')
    return data


def sorted_classes(data: Dict) -> List[Dict]:
    """``data["classes"]`` by id; ValueError unless the ids are 0..K-1."""
    classes = sorted(data["classes"], key=lambda c: c["id"])
    if [c["id"] for c in classes] != list(range(len(classes))):
        raise ValueError("class ids must be 0..K-1")
    return classes


def read_class_loss(path: str, num_classes: Optional[int] = None) -> ClassLoss:
    """Read a file written by :func:`write_class_loss`, checked against ``num_classes`` when given."""
    fix = f"re-create it with {hint('filter')} (it writes class_loss.json next to its output)"
    data = read_tagged_json(path, FORMAT, "class-loss", fix, ClassLossError)
    try:
        classes = sorted_classes(data)
        stats = ClassLoss(
            dataset=str(data["dataset"]),
            ignore_label=int(data["ignore_label"]),
            names=[str(c["name"]) for c in classes],
            pixels=[int(c["pixels"]) for c in classes],
            mean_loss=[None if c["mean_loss"] is None else float(c["mean_loss"]) for c in classes],
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ClassLossError(f"{path}: malformed class entry ({e}); {fix}") from None
    if num_classes is not None and stats.num_classes != num_classes:
        raise ClassLossError(
            f"{path} has {stats.num_classes} classes but the model/dataset has {num_classes}; "
            "use the class-loss file computed for this dataset"
        )
    return stats
