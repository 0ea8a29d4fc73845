"""Which evaluators a test set gets, and how the model is run for them: the wiring of Mask2Former's three tasks.

Official Mask2Former picks evaluators by the dataset's ``evaluator_type`` and the ``MODEL.MASK_FORMER.TEST.*_ON``
flags (facebookresearch/Mask2Former, train_net.py, Trainer.build_evaluator): mIoU where the split has semantic
maps, COCO panoptic quality with PANOPTIC_ON, mask AP with INSTANCE_ON, all from one inference pass. Here the flags
decide; the post-processing (thing ids from the test set's metadata, thresholds from the config) is a value handed to
the model for that pass (``TestTimeModel``), not state swapped on it. An open-vocabulary model (``OpenVocabulary``)
is also handed the test set's vocabulary (``Vocabulary.from_metadata``: its class names, seen flags and thing
classes), and its post-processing takes the thing ids from that vocabulary.

Every result file of a pass says which weights and config produced it (``evaluation.results_json.Provenance``):
``MODEL.WEIGHTS`` for ``--eval-only``, the checkpoint saved at that iteration (if any) during training.
"""

import os
from typing import Any, Dict, List, Optional

from torch import nn

from ..config import CfgNode, ConfigError, resolve_device
from ..data import DatasetCatalog, MetadataCatalog
from ..evaluation import (
    ClassificationEvaluator,
    COCOPanopticEvaluator,
    DatasetEvaluators,
    InstanceSegEvaluator,
    SemSegEvaluator,
)
from ..evaluation.results_json import Provenance
from ..modeling.inference import SegmentationInference
from ..modeling.meta_arch.open_vocabulary import OpenVocabulary
from ..modeling.open_vocab import Vocabulary
from ..modeling.postprocess import UniversalPostprocess

_PQ = ("PQ", "SQ", "RQ")
# Metrics named in the log line of each task (all of them go to metrics.json and inference/); the seen / unseen ones
# exist on open-vocabulary test sets only (metadata trainable_flag) and are skipped elsewhere.
LOGGED_METRICS = {
    "sem_seg": ("mIoU", "fwIoU", "mACC", "pACC", "mIoU_seen", "mIoU_unseen", "hIoU", "pAcc_seen", "pAcc_unseen"),
    "panoptic_seg": ("PQ", "SQ", "RQ", "PQ_th", "PQ_st", *(f"{k}_{g}" for g in ("seen", "unseen") for k in _PQ), "hPQ"),
    "segm": ("AP", "AP50", "AP75", "AP_seen", "AP_unseen", "hAP"),
    "classification": ("ACC1", "ACC5", "mACC1"),
}


def weights_provenance(cfg: CfgNode) -> Provenance:
    """What produced an evaluation of the model loaded from ``MODEL.WEIGHTS`` (``--eval-only``)."""
    return Provenance(cfg.MODEL.WEIGHTS, cfg)


def training_provenance(cfg: CfgNode, checkpointer: Any, iteration: int, last: bool) -> Provenance:
    """What produced an evaluation at ``iteration`` of training: the model in memory, which is the checkpoint
    ``checkpointer`` saved at that iteration (``model_final.pth`` at the last one, ``model_<iteration>.pth`` at a
    SOLVER.CHECKPOINT_PERIOD) when its ``last_checkpoint`` names it, else no file."""
    name = "model_final.pth" if last else f"model_{iteration:07d}.pth"
    path = os.path.join(cfg.OUTPUT_DIR, name)
    saved = checkpointer.get_checkpoint_file()
    return Provenance(path if saved and os.path.abspath(saved) == os.path.abspath(path) else None, cfg, iteration)


def universal_postprocess(cfg: CfgNode, dataset_name: str) -> Optional[UniversalPostprocess]:
    """The panoptic / instance post-processing for ``dataset_name``, or None for semantic-only evaluation."""
    flags = cfg.MODEL.MASK_FORMER.TEST
    if not (flags.PANOPTIC_ON or flags.INSTANCE_ON):
        return None
    return UniversalPostprocess.from_config(cfg, MetadataCatalog.get(dataset_name))


def build_evaluator(cfg: CfgNode, dataset_name: str, output_dir: str):
    """mIoU only for a semantic config; with panoptic / instance on, one evaluator per task the split can score,
    saving its predictions under ``output_dir`` with TEST.SAVE_PREDICTIONS. A split of ``evaluator_type``
    "classification" (FreeSeg's stage-1 region crops) gets top-1 / top-5 accuracy."""
    if MetadataCatalog.get(dataset_name).get("evaluator_type") == "classification":
        return ClassificationEvaluator.from_dataset(dataset_name, output_dir, resolve_device(cfg))
    postprocess = universal_postprocess(cfg, dataset_name)
    if postprocess is None:
        return SemSegEvaluator.from_dataset(dataset_name, output_dir, resolve_device(cfg))
    evaluators: List = []
    if postprocess.semantic_on and _has_semantic_maps(dataset_name):
        evaluators.append(SemSegEvaluator.from_dataset(dataset_name, output_dir, resolve_device(cfg)))
    save = cfg.TEST.SAVE_PREDICTIONS
    if postprocess.panoptic_on:
        evaluators.append(COCOPanopticEvaluator.from_dataset(dataset_name, output_dir, save_predictions=save))
    if postprocess.instance_on:
        evaluators.append(InstanceSegEvaluator.from_dataset(dataset_name, output_dir, save_predictions=save))
    if not evaluators:
        raise ConfigError(
            f"{dataset_name} has no semantic maps, and MODEL.MASK_FORMER.TEST turns only SEMANTIC_ON on: nothing to "
            "evaluate — enable PANOPTIC_ON or INSTANCE_ON, or test on a split with sem_seg_file_name"
        )
    return DatasetEvaluators(evaluators)


def _has_semantic_maps(dataset_name: str) -> bool:
    """Whether the split's records carry semantic maps (COCO's ``*_panoptic_with_sem_seg``, the toy), as official
    Mask2Former scores mIoU only on the splits registered with them."""
    records = DatasetCatalog.get(dataset_name)
    return bool(records) and "sem_seg_file_name" in records[0]


def evaluation_model(
    cfg: CfgNode, model: nn.Module, dataset_name: str, inference: Optional[SegmentationInference] = None
) -> "TestTimeModel":
    """What ``inference_on_dataset`` runs for ``dataset_name``: ``model`` with that set's post-processing (None for
    a semantic-only config) and ``inference`` mode; an open-vocabulary model also gets the set's vocabulary and a
    post-processing whose thing ids are the vocabulary's."""
    if isinstance(model, OpenVocabulary):
        vocabulary = _test_vocabulary(dataset_name)
        postprocess = UniversalPostprocess.from_config(cfg, thing_ids=vocabulary.thing_ids)
        return TestTimeModel(model, postprocess=postprocess, vocabulary=vocabulary, inference=inference)
    return TestTimeModel(model, postprocess=universal_postprocess(cfg, dataset_name), inference=inference)


def panel_model(cfg: CfgNode, model: nn.Module) -> nn.Module:
    """What the TensorBoard panels of DATASETS.TEST[0] run: an open-vocabulary model with that set's vocabulary and
    the semantic pass alone (the panels draw ``sem_seg`` with that set's class names), any other model as it is."""
    if not isinstance(model, OpenVocabulary) or not cfg.DATASETS.TEST:
        return model
    vocabulary = _test_vocabulary(cfg.DATASETS.TEST[0])
    semantic = UniversalPostprocess(thing_ids=vocabulary.thing_ids, rule=cfg.MODEL.MASK_FORMER.TEST.POSTPROCESS)
    return TestTimeModel(model, postprocess=semantic, vocabulary=vocabulary)


def _test_vocabulary(dataset_name: str) -> Vocabulary:
    metadata = MetadataCatalog.get(dataset_name)
    if metadata.get("stuff_classes") is None:
        raise ConfigError(
            f"{dataset_name}: an OpenVocabulary model segments the classes a test set names, but its metadata has no "
            f"'stuff_classes'; register the split with its class names"
        )
    return Vocabulary.from_metadata(metadata)


class TestTimeModel(nn.Module):
    """``model`` called with fixed keyword options (the post-processing, a test-time inference mode, an
    open-vocabulary model's vocabulary): what ``inference_on_dataset`` runs for one evaluation pass, so nothing is
    swapped on the model itself. Options that are None are not passed, so a plain pass calls ``model(batch)``."""

    def __init__(self, model: nn.Module, **options) -> None:
        super().__init__()
        self.model = model
        self.options = {key: value for key, value in options.items() if value is not None}
        self.train(model.training)  # evaluation restores the wrapper's mode, so it starts as the model's

    def forward(self, batched_inputs: List[dict]) -> List[Dict]:
        return self.model(batched_inputs, **self.options)
