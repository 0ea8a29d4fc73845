"""The evaluators' result and prediction files: strict JSON, indented by 2, written atomically.

Why strict (undefined metrics, NaN, written as ``null``): other JSON readers refuse ``NaN``, and ``null == null``
keeps two result files comparable where ``NaN != NaN`` would not. Atomic (``freemask.utils.atomic``) so a killed
evaluation never leaves half a results file that a later reader takes for a finished one. No final newline: the
bytes of the files written before the one helper existed.
"""

import logging
import math
import os

from ..utils.atomic import atomic_write_json

logger = logging.getLogger(__name__)


def write_results_json(path: str, obj: object) -> None:
    """Write ``obj`` (metrics or predictions; NaN anywhere inside becomes ``null``) to ``path``, creating its
    folder."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    atomic_write_json(path, _nan_to_none(obj), indent=2, allow_nan=False, final_newline=False)
    logger.info("Wrote %s", path)


def _nan_to_none(obj: object) -> object:
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    return obj
