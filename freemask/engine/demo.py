"""What ``tools/demo.py`` asks a model and draws: the task, the classes, one image's outputs, its figure.

A Mask2Former config turns on up to three outputs (``MODEL.MASK_FORMER.TEST.{SEMANTIC,PANOPTIC,INSTANCE}_ON``),
all from one forward pass; the demo draws one of them, or all. The classes come from the test set the model was
evaluated on (``DATASETS.TEST[0]``: names, colours, which are things), as in evaluation, or, for an open-vocabulary
model (one whose ``forward`` takes a ``vocabulary``), from names the user types. The post-processing handed to the
model is the one evaluation uses (``UniversalPostprocess.from_config``), with the thing classes of those classes.
A panoptic or instance figure with nothing to draw (no segment kept, no instance above the score threshold) says so
in a log line and on the figure itself, with the key or flag to lower: an unexplained bare image reads as a bug.
"""

import inspect
import logging
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ..config import CfgNode, ConfigError
from ..data.catalog import DatasetNotRegisteredError, Metadata, MetadataCatalog
from ..data.datasets.sem_seg import default_palette
from ..data.errors import DatasetError
from ..errors import ArgumentError
from ..modeling import META_ARCH_REGISTRY
from ..modeling.open_vocab.vocabulary import Vocabulary, VocabularyError
from ..modeling.postprocess import UniversalPostprocess
from ..utils.segment_overlays import instance_figure, panoptic_figure
from ..utils.visualizer import blend, colorize, labelled_panels, title_strip, vstack

TASKS = ("semantic", "panoptic", "instance")
# The default task is the most specific one the config has on: panoptic names every pixel and tells instances
# apart, instance tells apart the things only, semantic neither.
BY_SPECIFICITY = ("panoptic", "instance", "semantic")
_FLAGS = {"semantic": "SEMANTIC_ON", "panoptic": "PANOPTIC_ON", "instance": "INSTANCE_ON"}

logger = logging.getLogger(__name__)


def tasks_on(cfg: CfgNode) -> Tuple[str, ...]:
    """The tasks ``MODEL.MASK_FORMER.TEST`` turns on, in ``TASKS`` order (semantic only for other models)."""
    flags = cfg.MODEL.MASK_FORMER.TEST
    on = tuple(task for task in TASKS if flags[_FLAGS[task]])
    if not on:
        raise ConfigError("MODEL.MASK_FORMER.TEST: SEMANTIC_ON, INSTANCE_ON and PANOPTIC_ON all off; turn one on")
    return on


def choose_tasks(cfg: CfgNode, requested: Optional[str]) -> Tuple[str, ...]:
    """The tasks to draw: ``requested`` ("all" = every task on), or the most specific task on when None."""
    on = tasks_on(cfg)
    if requested is None:
        return (next(t for t in BY_SPECIFICITY if t in on),)
    if requested == "all":
        return on
    if requested not in on:
        raise ArgumentError(
            f"--task {requested}: the config has MODEL.MASK_FORMER.TEST.{_FLAGS[requested]} off; choose one of "
            f"{', '.join(on)}, or append MODEL.MASK_FORMER.TEST.{_FLAGS[requested]} True"
        )
    return (requested,)


def forward_parameters(cfg: CfgNode) -> Tuple[str, ...]:
    """Parameter names of the ``forward`` of MODEL.META_ARCHITECTURE, read from the class (nothing is built)."""
    name = cfg.MODEL.META_ARCHITECTURE
    try:
        cls = META_ARCH_REGISTRY.get(name)
    except KeyError:
        raise ConfigError(f"MODEL.META_ARCHITECTURE '{name}' is not registered") from None
    return tuple(inspect.signature(cls.forward).parameters)


def parse_vocabulary(text: str, cfg: CfgNode) -> Vocabulary:
    """``--vocabulary "cat,dog,traffic cone"``: every class unseen and a thing (``Vocabulary.from_names``). Refused
    for a model with a fixed set of classes, whose ``forward`` takes no vocabulary."""
    if "vocabulary" not in forward_parameters(cfg):
        raise ArgumentError(
            f"--vocabulary: MODEL.META_ARCHITECTURE '{cfg.MODEL.META_ARCHITECTURE}' has the fixed classes of its "
            "weights and takes no vocabulary; drop --vocabulary, or use an open-vocabulary config "
            "(MODEL.META_ARCHITECTURE OpenVocabulary)"
        )
    try:
        return Vocabulary.from_names(text.split(","))
    except VocabularyError as e:
        raise ArgumentError(f"--vocabulary {text!r}: {e}") from None


@dataclass(frozen=True)
class DemoClasses:
    """The classes of the predictions: contiguous-id order, as the model's outputs index them.

    ``vocabulary`` is what an open-vocabulary model is called with (None for a model with fixed classes);
    ``metadata`` holds the thing classes the post-processing reads (``thing_dataset_id_to_contiguous_id``)."""

    names: Tuple[str, ...]
    colors: Tuple[Tuple[int, ...], ...]
    metadata: Any
    vocabulary: Optional[Vocabulary] = None


def demo_classes(cfg: CfgNode, typed: Optional[Vocabulary]) -> DemoClasses:
    """The typed vocabulary's classes, or those of DATASETS.TEST[0] (a fixed-class model must have as many).

    Without a test set, only a fixed-class semantic config works (``class_<i>`` names, generated colours): the
    panoptic and instance outputs need to know which classes are things, an open-vocabulary model which classes
    to look for."""
    if typed is not None:
        metadata = Metadata("--vocabulary")
        metadata.thing_dataset_id_to_contiguous_id = {i: i for i in typed.thing_ids}
        return DemoClasses(typed.names, _colors(None, len(typed)), metadata, typed)
    open_vocabulary = "vocabulary" in forward_parameters(cfg)
    num_classes = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
    if not cfg.DATASETS.TEST:
        if open_vocabulary:
            raise ConfigError(
                "an open-vocabulary model needs the names of the classes to look for, and the config names no test "
                "set (DATASETS.TEST is empty): pass --vocabulary 'a,b,c', or append DATASETS.TEST \"('test_set',)\""
            )
        if tasks_on(cfg) != ("semantic",):
            raise ConfigError(
                "panoptic / instance outputs need the test set's thing classes, and the config names no test set "
                "(DATASETS.TEST is empty): append DATASETS.TEST \"('test_set',)\""
            )
        return DemoClasses(tuple(f"class_{i}" for i in range(num_classes)), _colors(None, num_classes), None)
    name = cfg.DATASETS.TEST[0]
    meta = MetadataCatalog.get(name)
    # stuff_classes names every class (detectron2's convention); an instance split has thing_classes only
    key = "stuff_classes" if meta.get("stuff_classes") is not None else "thing_classes"
    names = meta.get(key)
    if names is None:
        raise DatasetNotRegisteredError(f"DATASETS.TEST[0] '{name}' has no class metadata; is it registered?")
    if not open_vocabulary and len(names) != num_classes:
        raise DatasetError(
            f"the model has {num_classes} classes (MODEL.SEM_SEG_HEAD.NUM_CLASSES) but DATASETS.TEST[0] '{name}' has "
            f"{len(names)}; use the config the model was trained with"
        )
    colors = _colors(meta.get(key.replace("classes", "colors")), len(names))
    return DemoClasses(tuple(names), colors, meta, Vocabulary.from_metadata(meta) if open_vocabulary else None)


def _colors(colors: Optional[Sequence[Sequence[int]]], count: int) -> Tuple[Tuple[int, ...], ...]:
    return tuple(tuple(int(v) for v in c) for c in (colors or default_palette(count)))


def demo_postprocess(cfg: CfgNode, classes: DemoClasses) -> Optional[UniversalPostprocess]:
    """Evaluation's post-processing (rules and thresholds from the config, MODEL.MASK_FORMER.TEST.POSTPROCESS
    included, the thing classes of ``classes``), or None for a semantic-only config, whose model is called as
    evaluation calls it (an OpenVocabulary model then uses its own post-processing, the config's)."""
    flags = cfg.MODEL.MASK_FORMER.TEST
    if not (flags.PANOPTIC_ON or flags.INSTANCE_ON):
        return None
    if "postprocess" not in forward_parameters(cfg):
        raise ConfigError(
            f"MODEL.MASK_FORMER.TEST.PANOPTIC_ON / INSTANCE_ON are on, but MODEL.META_ARCHITECTURE "
            f"'{cfg.MODEL.META_ARCHITECTURE}' predicts semantic maps only; turn them off"
        )
    return UniversalPostprocess.from_config(cfg, classes.metadata)


@torch.no_grad()
def predict(
    model: nn.Module, inputs: dict, postprocess: Optional[UniversalPostprocess], vocabulary: Optional[Vocabulary]
) -> Dict[str, Any]:
    """One image's outputs (``sem_seg``, ``panoptic_seg``, ``instances`` for the tasks on) at its original size."""
    kwargs: Dict[str, Any] = {}
    if postprocess is not None:
        kwargs["postprocess"] = postprocess
    if vocabulary is not None:
        kwargs["vocabulary"] = vocabulary
    return model([inputs], **kwargs)[0]


def semantic_labels(outputs: Dict[str, Any]) -> np.ndarray:
    """Class ids ``(H, W)`` of the semantic scores."""
    return outputs["sem_seg"].argmax(dim=0).cpu().numpy()


def render(
    tasks: Sequence[str],
    image: np.ndarray,
    outputs: Dict[str, Any],
    classes: DemoClasses,
    opacity: float,
    score_threshold: float,
    postprocess: Optional[UniversalPostprocess] = None,
    name: str = "image",
) -> np.ndarray:
    """The figure of ``tasks``: image | overlay | legend; several tasks stacked, each row titled with its task.

    ``postprocess``: the one ``outputs`` came from (its thresholds are named when no segment passed them);
    ``name``: the image's name in the log line of a figure with nothing drawn."""
    rows = [_render_task(task, image, outputs, classes, opacity, score_threshold, postprocess, name) for task in tasks]
    if len(rows) == 1:
        return rows[0]
    figure = None
    for task, row in zip(tasks, rows):
        titled = vstack(title_strip([task], row.shape[1]), row)
        figure = titled if figure is None else vstack(figure, titled)
    return figure


def empty_panoptic_note(postprocess: Optional[UniversalPostprocess]) -> Tuple[str, Tuple[str, ...]]:
    """(log message, lines drawn on the figure) for a panoptic output without a segment. A query is kept when its
    class is not no-object, its probability exceeds OBJECT_MASK_THRESHOLD and it keeps at least OVERLAP_THRESHOLD of
    its mask (bytedance/FreeSeg, mask2former/open_vocabulary_model.py, OpenVocabulary.panoptic_inference): with
    either threshold above 0 they are what to lower; at 0 every query predicted no-object or an empty mask."""
    object_t = postprocess.object_mask_threshold if postprocess is not None else 0.0
    overlap_t = postprocess.overlap_threshold if postprocess is not None else 0.0
    if object_t > 0 or overlap_t > 0:
        message = (
            f"no panoptic segment passed MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD {object_t:g} / "
            f"OVERLAP_THRESHOLD {overlap_t:g} (or every query predicted no-object): nothing drawn; lower them "
            f"(append e.g. MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD {object_t / 2:g})"
        )
        lines = (
            "nothing drawn: no segment passed",
            "the thresholds; lower",
            "MODEL.MASK_FORMER.TEST.",
            f"OBJECT_MASK_THRESHOLD (now {object_t:g})",
            f"or OVERLAP_THRESHOLD (now {overlap_t:g})",
        )
        return message, lines
    message = (
        "no panoptic segment: every query predicted no-object or an empty mask, with "
        "MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD and OVERLAP_THRESHOLD already 0: nothing drawn; the model "
        "finds nothing in this image (trained long enough?)"
    )
    return message, ("nothing drawn: every query", "predicted no-object", "(thresholds already 0)")


def empty_instance_note(scores: Sequence[float], score_threshold: float) -> Tuple[str, Tuple[str, ...]]:
    """(log message, lines drawn on the figure) when no instance reaches the demo's ``--score-threshold``."""
    if not scores:
        message = "the model predicted no instance of a thing class: nothing drawn"
        return message, ("nothing drawn: no instance", "of a thing class predicted")
    best = max(scores)
    message = (
        f"no instance scored at least --score-threshold {score_threshold:g} (best {best:.2f}): nothing drawn; "
        f"lower --score-threshold"
    )
    return message, (
        "nothing drawn: no instance",
        f"scored >= {score_threshold:g} (best {best:.2f});",
        "lower --score-threshold",
    )


def _render_task(
    task, image, outputs, classes: DemoClasses, opacity: float, score_threshold: float, postprocess, name: str
) -> np.ndarray:
    names, colors = classes.names, classes.colors
    if task == "semantic":
        labels = semantic_labels(outputs)
        return labelled_panels([image, blend(image, colorize(labels, colors), opacity)], [labels], names, colors)
    if task == "panoptic":
        panoptic_seg, segments_info = outputs["panoptic_seg"]
        note: Tuple[str, ...] = ()
        if not segments_info:
            message, note = empty_panoptic_note(postprocess)
            logger.warning("demo: %s: %s", name, message)
        return panoptic_figure(image, panoptic_seg.cpu().numpy(), segments_info, names, colors, opacity, note=note)
    instances = outputs["instances"]
    scores = instances["scores"].cpu()
    keep = scores >= score_threshold
    note = ()
    if not bool(keep.any()):
        message, note = empty_instance_note(scores.tolist(), score_threshold)
        logger.warning("demo: %s: %s", name, message)
    masks = instances["pred_masks"].cpu()[keep].numpy()
    return instance_figure(
        image, masks, instances["pred_classes"].cpu()[keep].tolist(), scores[keep].tolist(), names, colors, opacity,
        note=note,
    )  # fmt: skip
