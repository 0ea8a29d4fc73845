"""The evaluators' result and prediction files: strict JSON, indented by 2, written atomically, saying what produced
them.

Why strict (undefined metrics, NaN, written as ``null``): other JSON readers refuse ``NaN``, and ``null == null``
keeps two result files comparable where ``NaN != NaN`` would not. Atomic (``freemask.utils.atomic``) so a killed
evaluation never leaves half a results file that a later reader takes for a finished one. No final newline: the
bytes of the files written before the one helper existed.

Why ``produced_by``: a results folder outlives the run that wrote it. An ``--eval-only`` of another model into the
same folder, killed before its results, left ``config_eval.yaml`` of the second model beside the first model's
results, and nothing in the results said which model they came from. So while a :class:`Provenance` is active
(:func:`results_produced_by`, set by whoever runs the evaluation), every results object written here carries, under
``produced_by``, the weights file (absolute path and sha256), for an evaluation during training the iteration, and
the whole merged config: the file alone says what produced it, whatever else the folder holds.
"""

import contextlib
import logging
import math
import os
from typing import Any, Dict, Iterator, List, Mapping, Optional

from ..utils.atomic import atomic_write_json
from ..utils.file_hash import file_sha256

logger = logging.getLogger(__name__)

PRODUCED_BY = "produced_by"


class Provenance:
    """What produced a result: ``weights`` (a checkpoint file, or None when the evaluated model exists only in
    memory), ``config`` (the merged config the run used) and, for an evaluation during training, ``iteration``.

    The weights are hashed when a file is first written (on the writing rank only, once), not when the value is made.
    """

    def __init__(self, weights: Optional[str], config: Mapping, iteration: Optional[int] = None) -> None:
        self.weights, self.config, self.iteration = weights or None, config, iteration
        self._record: Optional[Dict[str, Any]] = None

    def record(self) -> Dict[str, Any]:
        """The ``produced_by`` object: ``weights`` {path, sha256} (both null for an in-memory model; sha256 null for
        a path that is not a local file), ``iteration`` (null outside training), ``config``."""
        if self._record is None:
            path = os.path.abspath(self.weights) if self.weights else None
            digest = file_sha256(path) if path and os.path.isfile(path) else None
            self._record = {
                "weights": {"path": path, "sha256": digest},
                "iteration": self.iteration,
                "config": _plain(self.config),
            }
        return self._record


_active: List[Provenance] = []


@contextlib.contextmanager
def results_produced_by(provenance: Provenance) -> Iterator[None]:
    """Every results object written by :func:`with_provenance` / :func:`write_results_json` inside the block carries
    ``provenance`` (a process-wide setting: the evaluators write on their own, without knowing the model's file)."""
    _active.append(provenance)
    try:
        yield
    finally:
        _active.remove(provenance)


def with_provenance(obj: object) -> object:
    """``obj`` with ``produced_by`` added when it is a JSON object and a provenance is active; anything else (a list
    such as COCO's ``coco_instances_results.json``, whose readers take a bare list) as it is."""
    if not _active or not isinstance(obj, Mapping):
        return obj
    return {**obj, PRODUCED_BY: _active[-1].record()}


def write_results_json(path: str, obj: object) -> None:
    """Write ``obj`` (metrics or predictions; NaN anywhere inside becomes ``null``; ``produced_by`` added while a
    provenance is active) to ``path``, creating its folder."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    atomic_write_json(path, _nan_to_none(with_provenance(obj)), indent=2, allow_nan=False, final_newline=False)
    logger.info("Wrote %s", path)


def _plain(obj: object) -> object:
    """A config (nested mappings, tuples) as JSON values."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _nan_to_none(obj: object) -> object:
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    return obj
