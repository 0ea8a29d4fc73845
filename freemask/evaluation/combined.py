"""Several evaluators driven as one, so semantic, panoptic and instance metrics come from a single inference pass."""

from collections import OrderedDict
from typing import Dict, List, Sequence


class DatasetEvaluators:
    """Forwards ``reset / process / evaluate`` to each evaluator; the results are merged by task key.

    Each evaluator reads its own output field (``sem_seg``, ``panoptic_seg``, ``instances``) of the same model
    outputs, so a model that returns all three is run once. Two evaluators returning the same task key is an error
    (one result would silently hide the other).
    """

    def __init__(self, evaluators: Sequence) -> None:
        self.evaluators = list(evaluators)

    def reset(self) -> None:
        for evaluator in self.evaluators:
            evaluator.reset()

    def process(self, inputs: List[dict], outputs: List[dict]) -> None:
        for evaluator in self.evaluators:
            evaluator.process(inputs, outputs)

    def evaluate(self) -> "OrderedDict[str, Dict[str, float]]":
        """Every evaluator's results (call on all ranks, as each evaluator requires)."""
        results: "OrderedDict[str, Dict[str, float]]" = OrderedDict()
        for evaluator in self.evaluators:
            for task, metrics in evaluator.evaluate().items():
                if task in results:
                    raise ValueError(f"two evaluators both return results for '{task}'; evaluate each task once")
                results[task] = metrics
        return results
