"""FreeSeg's stage 1, prompt learning: frozen CLIP classifies masked ground-truth crops, only the prompt trains.

Each sample is one ground-truth mask of one image, already cut out around the mask by the stage-1 mapper
(``{"image": uint8 (3, h, w), "instances": {"gt_masks": bool (1, h, w), "gt_classes": int64 (1,)}}``). The
computation is FreeSeg's (bytedance/FreeSeg, mask2former/proposal_classification.py,
``ProposalClipClassifier.forward``): the crop is CLIP-normalised ((x / 255 - mean) / std), then every pixel outside
the mask is set to CLIP's mean (0.481, 0.458, 0.408) *in that normalised image* — a light grey, not the mean colour
that normalises to 0, which is what stage 2's region classifier fills with (freemask/modeling/clip/regions.py,
FreeSeg's ``MaskFormerClipAdapter``); MODEL.CLIP_ADAPTER.MASK_FILL is stage 2's key and stage 1 does not read it. The
crop's CLIP features are scored as 100 x cosine (FreeSeg's ``ClipAdapter.get_sim_logits``) against the prompt's
text features of the training vocabulary for the batch's task (below), and the loss is the cross-entropy over the
training (seen) classes. Crops are not resized: CLIP reads a crop that is not its input size (FreeSeg's 244 x 224
training crops) on position embeddings interpolated to the crop's patch grid, as FreeSeg's CLIP does.

The task is FreeSeg's too: the whole batch is classified with the prompt of its first sample's ``task``
(``sem_seg`` / ``ins_seg`` / ``pan_seg``), which only the COCO full-task stage-1 records name (one record per semantic
class, thing instance and panoptic segment: freemask/data/datasets/classification.py); a sample without one uses
"semantic segmentation.", so ADE20K's and VOC's stage 1 and every evaluation train and score the semantic prompt
alone. The task must be one of INPUT.TASK_NAME (FreeSeg's prompt learner knows those only).
"""

from typing import Any, Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from ...config import CfgNode, ConfigError
from ...data.catalog import MetadataCatalog
from ..clip import FrozenClip, PromptLearner, build_prompt_learner
from ..clip.regions import LOGIT_SCALE
from ..open_vocab import Vocabulary
from ..registry import META_ARCH_REGISTRY

# A stage-1 record's ``task`` -> the task name its prompt starts with (FreeSeg's ProposalClipClassifier.forward).
RECORD_TASKS = {
    "sem_seg": "semantic segmentation.",
    "ins_seg": "instance segmentation.",
    "pan_seg": "panoptic segmentation.",
}


@META_ARCH_REGISTRY.register()
class ProposalClipClassifier(nn.Module):
    """Training: ``{"loss_cls"}``. Evaluation: per sample ``{"classification": (K,) logits}`` over the evaluation
    vocabulary (``vocabulary`` if given, else DATASETS.TEST[0]'s at build time, else the training one)."""

    def __init__(
        self,
        *,
        clip: FrozenClip,
        prompt_learner: PromptLearner,
        train_vocabulary: Vocabulary,
        test_vocabulary: Vocabulary,
        task_names: Sequence[str],
    ) -> None:
        super().__init__()
        self.clip = clip
        self.prompt_learner = prompt_learner
        self.train_vocabulary = train_vocabulary
        self.test_vocabulary = test_vocabulary
        self.task_names = tuple(task_names)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> Dict[str, Any]:
        if not cfg.DATASETS.TRAIN:
            raise ConfigError("DATASETS.TRAIN is empty: stage 1 learns the prompt of its first dataset's classes")
        clip = FrozenClip.from_config(cfg)
        train_vocabulary = vocabulary_of(cfg.DATASETS.TRAIN[0])
        return {
            "clip": clip,
            "prompt_learner": build_prompt_learner(cfg, clip),
            "train_vocabulary": train_vocabulary,
            "test_vocabulary": vocabulary_of(cfg.DATASETS.TEST[0]) if cfg.DATASETS.TEST else train_vocabulary,
            "task_names": list(cfg.INPUT.TASK_NAME),
        }

    @property
    def device(self) -> torch.device:
        return self.clip.device

    def forward(
        self, batched_inputs: List[dict], vocabulary: Optional[Vocabulary] = None
    ) -> Union[Dict[str, torch.Tensor], List[Dict[str, torch.Tensor]]]:
        features = F.normalize(self.clip.encode_image(self.masked_crops(batched_inputs)), dim=-1)
        task = self.task_of(batched_inputs)
        if self.training:
            text = self.prompt_learner(self.train_vocabulary.names, task)
            targets = torch.cat([_field(x["instances"], "gt_classes") for x in batched_inputs]).to(self.device)
            return {"loss_cls": F.cross_entropy(LOGIT_SCALE * features @ text.t(), self._checked(targets.long()))}
        vocab = vocabulary if vocabulary is not None else self.test_vocabulary
        logits = LOGIT_SCALE * features @ self.prompt_learner(vocab.names, task).t()
        return [{"classification": row} for row in logits]

    def task_of(self, batched_inputs: List[dict]) -> str:
        """The task name of the batch: its first sample's ``task``, the semantic task when it names none."""
        record_task = batched_inputs[0].get("task", "sem_seg")
        task = RECORD_TASKS.get(record_task)
        if task not in self.task_names:
            raise ConfigError(
                f"a stage-1 sample names the task {record_task!r} ({task}), which INPUT.TASK_NAME "
                f"{list(self.task_names)} does not list; add it (records name one of {sorted(RECORD_TASKS)})"
            )
        return task

    def masked_crops(self, batched_inputs: List[dict]) -> torch.Tensor:
        """(N, 3, h, w) CLIP-normalised images whose pixels outside each sample's mask hold CLIP's mean (FreeSeg's
        fill, module docstring), at the mapper's crop size: CLIP reads any size (``FrozenClip.encode_image``)."""
        images = torch.stack([x["image"] for x in batched_inputs]).to(self.device).float()
        masks = torch.stack([_field(x["instances"], "gt_masks")[0] for x in batched_inputs]).to(self.device)
        inside = masks[:, None].to(images.dtype)
        mean = images.new_tensor(self.clip.pixel_mean).view(1, 3, 1, 1)
        return self.clip.normalize_image(images) * inside + (1 - inside) * mean

    def _checked(self, targets: torch.Tensor) -> torch.Tensor:
        k = len(self.train_vocabulary)
        low, high = int(targets.min()), int(targets.max())
        if low < 0 or high >= k:
            raise ConfigError(
                f"a training sample has class {high if high >= k else low}, outside the {k} classes of DATASETS.TRAIN"
                "[0]'s stuff_classes; the stage-1 records must use the split's contiguous ids"
            )
        return targets


def vocabulary_of(dataset_name: str) -> Vocabulary:
    """The vocabulary of a registered split's metadata (``stuff_classes``, ``trainable_flag``, ``thing_classes``)."""
    meta = MetadataCatalog.get(dataset_name)
    if not meta.get("stuff_classes"):
        raise ConfigError(
            f"dataset '{dataset_name}' has no metadata 'stuff_classes' (the class names CLIP's prompts are built "
            "from); register it with them or use an open-vocabulary split"
        )
    return Vocabulary.from_metadata(meta)


def _field(instances: Any, key: str) -> torch.Tensor:
    """``instances[key]`` for the mappers' dicts, ``instances.key`` for detectron2-style objects."""
    return instances[key] if isinstance(instances, dict) else getattr(instances, key)
