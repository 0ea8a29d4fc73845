"""FreeSeg's stage-2 model (``OpenVocabulary``): our Mask2Former whose queries are classified by CLIP text features.

Flow (bytedance/FreeSeg, mask2former/open_vocabulary_model.py, ``OpenVocabulary.forward``): backbone -> pixel decoder
-> text-pixel interaction with the K + 1 text features of one task's prompt (K class names + a learned no-object
embedding) -> masked-attention decoder whose class head gives query embeddings -> logits ``100 x cos(embedding, text
feature)`` for the final and every auxiliary prediction. The class list is data: the training split's names in
training, any :class:`Vocabulary` at test time.

Choices, kept from FreeSeg (F) or changed on purpose (C):

- (F) Text features: the prompt learner's L2-normalised class features with the normalised no-object embedding
  (1 x E, N(0, width^-0.5), trained) appended; logit scale fixed at 100 (FreeSeg's ``MaskFormerClipAdapter``,
  mask2former/modeling/clip_adapter/adapter.py). 10 masked-attention layers are ``DEC_LAYERS: 10`` (our key counts
  layers).
- (C) Task per step: ``TaskSampler(INPUT.TASK_NAME, SEED)`` indexed by a step counter saved with the weights (the
  ``train_step`` buffer), so every rank trains the same task and a resumed run continues the sequence (FreeSeg:
  unseeded ``random.choice`` per process).
- (C) Loss: Mask2Former's point-sampled BCE + dice and CE (``MaskFormer.build_criterion``, CLASS_WEIGHT read) instead
  of FreeSeg's focal + dice on full masks with a hard-coded class weight 1: the same losses as our Mask2Former, at
  Mask2Former's cost; every auxiliary loss is kept (FreeSeg drops the 10th).
- Targets: semantic = one mask per class present in ``sem_seg``; instance = the non-crowd thing segments; panoptic =
  all non-crowd segments (the ``open_vocab_all_task`` mapper). (C) A sample without segments (a FreeMask synthetic
  pair, semantic maps only) trains with the semantic task in every step: the batch is split into task groups, each
  with its own text features, interaction and decoder pass (backbone and pixel decoder once), and the groups' outputs
  are concatenated for ONE criterion call, so the loss is that of the whole batch.
- Inference: backbone and pixel decoder once; one interaction + decoder pass per enabled task with that task's
  prompt: semantic when SEMANTIC_ON, instance / panoptic when MODEL.MASK_FORMER.TEST.INSTANCE_ON / PANOPTIC_ON (the
  post-processing's flags; FreeSeg reads INPUT.TASK_NAME and always runs semantic). (F) Each query's mask (sigmoid,
  at the input resolution) is classified by CLIP on the un-normalised image (``region_logits``) and combined with
  the mask classifier by :func:`ensemble_probabilities` with lambda = CLIP_ENSEMBLE_WEIGHT and the vocabulary's
  seen flags (none given: every class unseen, as FreeSeg; the flags used are logged once per vocabulary);
  CLIP_ENSEMBLE False: the mask classifier alone.
- Post-processing, by the handed post-processing's ``rule`` (MODEL.MASK_FORMER.TEST.POSTPROCESS):
  (F) "freeseg" / "freeseg_corrected": FreeSeg's forward. Mask logits upsampled to the padded batch with
  ``align_corners=True`` and cropped to the input size; semantic scores ``sum_q p * sigmoid(mask)`` made there and
  resized bilinearly to the original size (detectron2's ``sem_seg_postprocess``); panoptic and instance outputs made
  there by FreeSeg's rules (freemask/modeling/open_vocab/freeseg_postprocess.py) and resized by nearest neighbour.
  (C) "mask2former": Mask2Former's ``align_corners=False``; with panoptic or instance on, masks resized to the
  original size before any post-processing (``sem_seg_postprocess_before_inference``); Mask2Former's panoptic rule
  (a query dropped when the mask classifier's argmax over K + 1 is no-object or its score is not above
  OBJECT_MASK_THRESHOLD, then the pixel assignment between queries and the overlap test) and top-k instances over
  (query, thing class) pairs, both scored by FreeSeg's sharpened ``softmax(p / 0.01)`` of the ensembled
  probabilities. It is what this model computed before FreeSeg's inference was reproduced.
- ``predict`` (inherited; the FreeMask filter's entry) is the mask classifier alone: training vocabulary, semantic
  prompt, no CLIP ensemble.
"""

import logging
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ...config import CfgNode, ConfigError
from ...data import MetadataCatalog
from ..build import build_backbone, build_pixel_decoder
from ..clip import FrozenClip, RegionClassifier, build_prompt_learner
from ..criterion import targets_from_instances
from ..heads.text_interaction import TEXT_NORMS, TextPixelInteraction
from ..inference import SegmentationInference
from ..open_vocab import TaskSampler, Vocabulary
from ..open_vocab.ensemble import ensemble_probabilities
from ..open_vocab.task_outputs import freeseg_output, mask2former_output
from ..postprocess import MASK2FORMER, UniversalPostprocess, resize_mask_logits, semantic_from_probs
from ..registry import META_ARCH_REGISTRY
from ..transformer_decoder.open_vocab_decoder import OpenVocabMaskedTransformerDecoder
from .mask_former import MaskFormer

SEMANTIC, INSTANCE, PANOPTIC = "semantic segmentation.", "instance segmentation.", "panoptic segmentation."
LOGIT_SCALE = 100.0  # FreeSeg's fixed temperature of the cosine logits (not CLIP's learned one), get_sim_logits
logger = logging.getLogger(__name__)


def training_vocabulary(cfg: CfgNode) -> Vocabulary:
    """The vocabulary of ``DATASETS.TRAIN[0]``; every other training set (TRAIN_SYN included) must name the same
    classes in the same order, and MODEL.SEM_SEG_HEAD.NUM_CLASSES must be their number."""
    names = list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TRAIN_SYN)
    if not cfg.DATASETS.TRAIN:
        raise ConfigError(
            "OpenVocabulary takes its training classes from DATASETS.TRAIN[0], but DATASETS.TRAIN is empty"
        )
    vocabularies = []
    for name in names:
        meta = MetadataCatalog.get(name)
        if meta.get("stuff_classes") is None:
            raise ConfigError(
                f"DATASETS: the metadata of {name} has no 'stuff_classes' (the class names OpenVocabulary trains "
                f"with); register it with its class names"
            )
        vocabularies.append(Vocabulary.from_metadata(meta))
    first = vocabularies[0]
    for name, vocabulary in zip(names[1:], vocabularies[1:]):
        if vocabulary.names != first.names:
            raise ConfigError(
                f"DATASETS: {name} names the classes {list(vocabulary.names)[:6]}... but {names[0]} names "
                f"{list(first.names)[:6]}...; all training sets of an OpenVocabulary model must share one vocabulary"
            )
    if cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES != len(first):
        raise ConfigError(
            f"MODEL.SEM_SEG_HEAD.NUM_CLASSES is {cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES} but {names[0]} names "
            f"{len(first)} training classes; set NUM_CLASSES {len(first)}"
        )
    return first


@META_ARCH_REGISTRY.register()
class OpenVocabulary(MaskFormer):
    """Open-vocabulary Mask2Former (see the module docstring for the choices).

    ``model(batched_inputs, postprocess=None, vocabulary=None)``: training -> dict of weighted losses (the training
    vocabulary, whatever ``vocabulary`` says); evaluation -> per image the outputs of the tasks ``postprocess`` (by
    default the config's) has on, ``sem_seg`` (K, H, W), ``panoptic_seg``, ``instances`` as MaskFormer's, over
    ``vocabulary`` (default: the training one).

    Args:
        clip: the frozen CLIP (text and image towers).
        prompt_learner: class names + task -> (K, E) normalised text features.
        interaction: the text-pixel interaction layer.
        vocabulary: the training vocabulary (its size is the criterion's class count).
        task_sampler: the task of each training step.
        clip_ensemble, ensemble_weight: whether and how CLIP's region classification joins at test time.
        region_classifier: how CLIP classifies each query's region (MODEL.CLIP_ADAPTER.{MASK_THR, MASK_FILL,
            MASK_EXPAND_RATIO, REGION_SIZE}).
        test_postprocess: the post-processing used when the caller gives none.
        input_format: channel order of ``x["image"]`` ("RGB" / "BGR"); CLIP sees RGB.
        kwargs: MaskFormer's (backbone, pixel decoder, an :class:`OpenVocabMaskedTransformerDecoder`, criterion ...).
    """

    def __init__(
        self,
        *,
        clip: FrozenClip,
        prompt_learner: nn.Module,
        interaction: TextPixelInteraction,
        vocabulary: Vocabulary,
        task_sampler: TaskSampler,
        clip_ensemble: bool = True,
        ensemble_weight: float = 0.8,
        region_classifier: RegionClassifier = RegionClassifier(),
        test_postprocess: Optional[UniversalPostprocess] = None,
        input_format: str = "RGB",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if self.criterion.num_classes != len(vocabulary):
            raise ValueError(
                f"OpenVocabulary: the criterion has {self.criterion.num_classes} classes, the training vocabulary "
                f"{len(vocabulary)}"
            )
        if not 0.0 <= ensemble_weight <= 1.0:
            raise ConfigError(f"MODEL.CLIP_ADAPTER.CLIP_ENSEMBLE_WEIGHT must be in [0, 1], got {ensemble_weight}")
        self.clip = clip
        self.prompt_learner = prompt_learner
        self.interaction = interaction
        self.vocabulary = vocabulary
        self.task_sampler = task_sampler
        self.clip_ensemble = clip_ensemble
        self.ensemble_weight = float(ensemble_weight)
        self.region_classifier = region_classifier
        self.test_postprocess = test_postprocess or UniversalPostprocess(thing_ids=vocabulary.thing_ids)
        self.input_format = input_format
        # FreeSeg's non_object_embedding (MaskFormerClipAdapter): appended, normalised, after the K class features.
        self.no_object_embedding = nn.Parameter(torch.randn(1, clip.embed_dim) * clip.width**-0.5)
        self.register_buffer("train_step", torch.zeros((), dtype=torch.int64))
        self._logged_vocabularies: set = set()  # the vocabularies whose seen flags were logged

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        head, adapter = cfg.MODEL.SEM_SEG_HEAD, cfg.MODEL.CLIP_ADAPTER
        vocabulary = training_vocabulary(cfg)
        clip = FrozenClip.from_config(cfg)
        if head.EMBEDDING_DIM != clip.embed_dim:
            raise ConfigError(
                f"MODEL.SEM_SEG_HEAD.EMBEDDING_DIM {head.EMBEDDING_DIM} must be the CLIP embedding width "
                f"{clip.embed_dim} of {adapter.CLIP_MODEL_NAME}; set EMBEDDING_DIM {clip.embed_dim}"
            )
        if not head.EMB_SIZE == head.CONVS_DIM == head.MASK_DIM:
            raise ConfigError(
                f"MODEL.SEM_SEG_HEAD.EMB_SIZE {head.EMB_SIZE} (the interaction's pixel width) must equal CONVS_DIM "
                f"{head.CONVS_DIM} and MASK_DIM {head.MASK_DIM} (the pixel decoder's outputs); set them equal"
            )
        if head.INTERACTION_TEXT_NORM not in TEXT_NORMS:
            raise ConfigError(
                f"MODEL.SEM_SEG_HEAD.INTERACTION_TEXT_NORM is {head.INTERACTION_TEXT_NORM!r}; choose one of "
                f"{', '.join(TEXT_NORMS)}"
            )
        prompt_learner = build_prompt_learner(cfg, clip)  # loads and freezes PROMPT_CHECKPOINT when set
        backbone = build_backbone(cfg)
        decoder_args = OpenVocabMaskedTransformerDecoder.from_config(cfg, head.CONVS_DIM)
        return {
            "backbone": backbone,
            "pixel_decoder": build_pixel_decoder(cfg, backbone.output_shape()),
            "transformer_decoder": OpenVocabMaskedTransformerDecoder(**decoder_args),
            "criterion": cls.build_criterion(cfg),
            "deep_supervision": cfg.MODEL.MASK_FORMER.DEEP_SUPERVISION,
            "clip": clip,
            "prompt_learner": prompt_learner,
            "interaction": TextPixelInteraction(
                head.EMB_SIZE,
                clip.embed_dim,
                head.EMBED_DIM,
                head.NUM_HEADS,
                head.USE_LAYER_SCALE,
                text_norm=head.INTERACTION_TEXT_NORM,
            ),
            "vocabulary": vocabulary,
            "task_sampler": TaskSampler(cfg.INPUT.TASK_NAME, cfg.SEED),
            "clip_ensemble": adapter.CLIP_ENSEMBLE,
            "ensemble_weight": adapter.CLIP_ENSEMBLE_WEIGHT,
            "region_classifier": RegionClassifier.from_config(cfg),
            "test_postprocess": UniversalPostprocess.from_config(cfg, thing_ids=vocabulary.thing_ids),
            "input_format": cfg.INPUT.FORMAT,
            **cls.base_config(cfg),
        }

    # ------------------------------------------------------------------------------------------------ the model
    def text_features(self, vocabulary: Vocabulary, task_name: str) -> torch.Tensor:
        """(K + 1, E): the prompt's normalised class features, then the normalised no-object embedding."""
        classes = self.prompt_learner(list(vocabulary.names), task_name)
        no_object = F.normalize(self.no_object_embedding, dim=-1)
        return torch.cat([classes, no_object.to(classes.dtype)])

    def _head(self, mask_features: torch.Tensor, multi_scale: List[torch.Tensor], text: torch.Tensor) -> dict:
        """Interaction + decoder on pixel-decoder outputs; every prediction's ``pred_logits`` (N, Q, K + 1)."""
        mask_features, multi_scale = self.interaction(mask_features, multi_scale, text)
        outputs = self.transformer_decoder(multi_scale, mask_features)
        for prediction in [outputs, *outputs["aux_outputs"]]:
            embedding = F.normalize(prediction["pred_logits"], dim=-1)
            prediction["pred_logits"] = LOGIT_SCALE * embedding @ text.to(embedding.dtype).T
        return outputs

    def _pixel_features(self, images: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        mask_features, _, multi_scale = self.pixel_decoder.forward_features(self.backbone(images))
        return mask_features, multi_scale

    def _decode(self, images: torch.Tensor) -> dict:
        """MaskFormer's hook (``predict``): the training vocabulary with the semantic prompt, mask classifier only."""
        return self._head(*self._pixel_features(images), self.text_features(self.vocabulary, SEMANTIC))

    def forward(
        self,
        batched_inputs: List[dict],
        postprocess: Optional[UniversalPostprocess] = None,
        vocabulary: Optional[Vocabulary] = None,
        inference: Optional[SegmentationInference] = None,
    ) -> Any:
        """``inference`` overrides the model's test-time mode for this call, as in MaskFormer (whole-image only)."""
        if self.training:
            return self.training_losses(batched_inputs)
        return self.inference_outputs(
            batched_inputs,
            postprocess or self.test_postprocess,
            vocabulary or self.vocabulary,
            self.inference if inference is None else inference,
        )

    # --------------------------------------------------------------------------------------------------- training
    def training_losses(self, batched_inputs: List[dict]) -> Dict[str, torch.Tensor]:
        """Weighted losses of one step: the step's task for samples with segments, semantic for the others."""
        task = self.task_sampler.task_at(int(self.train_step))
        self.train_step += 1
        tasks = [task if "instances" in x else SEMANTIC for x in batched_inputs]
        images = self._pad_images([self._normalize(x["image"]) for x in batched_inputs])
        mask_features, multi_scale = self._pixel_features(images)
        order: List[int] = []
        group_outputs = []
        for group_task in dict.fromkeys(tasks):  # the tasks present, in first-seen order
            index = [i for i, t in enumerate(tasks) if t == group_task]
            order += index
            rows = torch.tensor(index, device=mask_features.device)
            text = self.text_features(self.vocabulary, group_task)
            group_outputs.append(self._head(mask_features[rows], [x[rows] for x in multi_scale], text))
        outputs = _concat_outputs(group_outputs)
        if not self.deep_supervision:
            outputs.pop("aux_outputs", None)
        targets = [self._target(batched_inputs[i], tasks[i], images.shape[-2:]) for i in order]
        return self.criterion.weighted(self.criterion(outputs, targets))

    def _target(self, x: dict, task: str, size: Tuple[int, int]) -> Dict[str, torch.Tensor]:
        """One sample's set target for ``task``, padded to the batch ``size``."""
        if task == SEMANTIC:
            if "sem_seg" not in x:
                raise ConfigError(
                    "OpenVocabulary's semantic task needs each training sample's 'sem_seg'; train with "
                    "INPUT.DATASET_MAPPER_NAME 'open_vocab_all_task' (or a semantic mapper)"
                )
            return self._semantic_target(x["sem_seg"], size)
        instances = x["instances"]
        if task == INSTANCE:
            if "gt_is_thing" not in instances:
                raise ConfigError(
                    "OpenVocabulary's instance task needs the segments' thing flags ('gt_is_thing'); train with "
                    "INPUT.DATASET_MAPPER_NAME 'open_vocab_all_task'"
                )
            things = instances["gt_is_thing"].to(torch.bool)
            instances = {"gt_masks": instances["gt_masks"][things], "gt_classes": instances["gt_classes"][things]}
        return targets_from_instances([instances], size, self.device)[0]

    # -------------------------------------------------------------------------------------------------- inference
    def inference_outputs(
        self,
        batched_inputs: List[dict],
        postprocess: UniversalPostprocess,
        vocabulary: Vocabulary,
        inference: SegmentationInference,
    ) -> List[Dict[str, Any]]:
        """Per image the outputs of every task ``postprocess`` has on, at ``(x["height"], x["width"])``."""
        if inference.mode != "whole" or inference.ratios != (1.0,) or inference.flip:
            raise ConfigError(
                "OpenVocabulary's inference is whole-image only: turn off TEST.SLIDING_WINDOW.ENABLED and "
                "TEST.AUG.ENABLED"
            )
        passes = [
            (task, key)
            for task, key, on in (
                (SEMANTIC, "sem_seg", postprocess.semantic_on),
                (PANOPTIC, "panoptic_seg", postprocess.panoptic_on),
                (INSTANCE, "instances", postprocess.instance_on),
            )
            if on
        ]
        self._log_seen_flags(vocabulary)
        freeseg = postprocess.rule != MASK2FORMER
        # Mask2Former's sem_seg_postprocess_before_inference: with panoptic or instance on, masks are resized to the
        # original size before any post-processing. FreeSeg's forward makes every output at the input size.
        before = not freeseg and (postprocess.panoptic_on or postprocess.instance_on)
        images = [self._normalize(x["image"]) for x in batched_inputs]
        batch = self._pad_images(images, inference.size_divisibility)
        mask_features, multi_scale = self._pixel_features(batch)
        results: List[Dict[str, Any]] = [{} for _ in batched_inputs]
        for task, key in passes:
            text = self.text_features(vocabulary, task)
            outputs = self._head(mask_features, multi_scale, text)
            masks = F.interpolate(
                outputs["pred_masks"].float(), size=batch.shape[-2:], mode="bilinear", align_corners=freeseg
            )
            for result, mask_cls, mask_pred, image, x in zip(
                results, outputs["pred_logits"], masks, images, batched_inputs
            ):
                mask_pred = mask_pred[:, : image.shape[-2], : image.shape[-1]]
                probs = self.class_probabilities(mask_cls, mask_pred, x["image"], text[:-1], vocabulary)
                size = (int(x["height"]), int(x["width"]))
                if key == "sem_seg" and not before:  # detectron2's sem_seg_postprocess of input-size scores
                    scores = semantic_from_probs(probs, mask_pred)
                    result[key] = F.interpolate(scores[None], size=size, mode="bilinear", align_corners=False)[0]
                elif freeseg:
                    things, trained = vocabulary.thing_ids, len(self.vocabulary)
                    result[key] = freeseg_output(key, probs, mask_pred, size, postprocess, things, trained)
                elif key == "sem_seg":
                    result[key] = semantic_from_probs(probs, resize_mask_logits(mask_pred, size))
                else:
                    mask_pred = resize_mask_logits(mask_pred, size)
                    result[key] = mask2former_output(key, mask_cls, probs, mask_pred, postprocess, vocabulary.thing_ids)
        return results

    def _log_seen_flags(self, vocabulary: Vocabulary) -> None:
        """One info line per vocabulary: how many classes the CLIP ensemble treats as seen / unseen, and why."""
        if not self.clip_ensemble or vocabulary in self._logged_vocabularies:
            return
        self._logged_vocabularies.add(vocabulary)
        seen = sum(vocabulary.seen)
        logger.info(
            f"OpenVocabulary: CLIP ensemble over {len(vocabulary)} classes, {seen} seen and {len(vocabulary) - seen} "
            f"unseen ({vocabulary.seen_source})"
        )

    def class_probabilities(
        self,
        mask_cls: torch.Tensor,
        mask_pred: torch.Tensor,
        image: torch.Tensor,
        class_text: torch.Tensor,
        vocabulary: Vocabulary,
    ) -> torch.Tensor:
        """(Q, K) class probabilities of one image's queries: the mask classifier's ``mask_cls`` (Q, K + 1), with
        CLIP's classification of each mask ``mask_pred`` (Q, h, w) logits on ``image`` (3, h, w) 0..255 ensembled."""
        if not self.clip_ensemble:
            return mask_cls.float().softmax(-1)[:, :-1]
        rgb = image.to(self.device).float()
        if self.input_format == "BGR":
            rgb = rgb.flip(0)
        clip_logits, valid = self.region_classifier(self.clip, rgb, mask_pred.sigmoid(), class_text)
        seen = torch.tensor(vocabulary.seen, dtype=torch.bool)
        return ensemble_probabilities(mask_cls, clip_logits, valid, seen, self.ensemble_weight)


def _concat_outputs(outputs: Sequence[dict]) -> dict:
    """Decoder outputs of several groups of images as one batch (groups in order)."""
    if len(outputs) == 1:
        return outputs[0]
    merged = {k: torch.cat([o[k] for o in outputs]) for k in ("pred_logits", "pred_masks")}
    merged["aux_outputs"] = [
        {k: torch.cat([o["aux_outputs"][i][k] for o in outputs]) for k in ("pred_logits", "pred_masks")}
        for i in range(len(outputs[0]["aux_outputs"]))
    ]
    return merged
