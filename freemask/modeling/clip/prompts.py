"""Text features of class names for a task: FreeSeg's adaptive (learned) prompt and the fixed-template variant.

FreeSeg's learned prompt (bytedance/FreeSeg, mask2former/modeling/clip_adapter/text_prompt.py,
``LearnablePromptExtractor``) is, for every class, the sequence

    [task-name words][TASK_PROMPT_SHAPE task vectors][SOT][PROMPT_SHAPE[0] context vectors][class-name words]
    [PROMPT_SHAPE[1] suffix vectors][.][EOT][padding to CLIP's context]

where the words are CLIP's token embeddings (e.g. "semantic segmentation." for the task), the vectors are learned,
shared by every class and task, and the start token comes after the task part, as in FreeSeg. The suffix vectors
(none in every FreeSeg config) sit between the class name and the full stop, where FreeSeg puts them. The
text feature is CLIP's output at the end token, L2-normalised.

Once the prompt is frozen (stage 2 after loading stage 1's checkpoint) or while the model is in eval mode, a class's
features do not change, so they are computed once per (task, class name) and cached. FreeSeg keys its cache by the
class name alone, so with several tasks a frozen prompt returns the first task's features for every task; here the
task is part of the key.
"""

import os
import pickle
import zipfile
from typing import Dict, Hashable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ...config import CfgNode, ConfigError
from .errors import ClipError
from .model import FrozenClip

# Buffers FreeSeg's prompt learner saves next to its parameters; they are CLIP token embeddings, recomputed here.
_FREESEG_BUFFERS = ("start_signal", "dot_signal", "end_signal", "pad_signal")
_CHECKPOINT_KEY = "MODEL.CLIP_ADAPTER.PROMPT_CHECKPOINT"


class PromptLearner(nn.Module):
    """Class names + task name -> ``(K, E)`` L2-normalised text features, cached when they cannot change.

    The CLIP is borrowed, not registered as a submodule: the model that owns both registers the CLIP (moving it to
    its device and saving it once); registering it here too would save every CLIP weight twice.
    """

    # Whether the features depend on the task (part of the cache key).
    task_dependent = True

    def __init__(self, clip: FrozenClip) -> None:
        super().__init__()
        self.__dict__["_clip"] = clip  # plain attribute: see the class docstring
        self.frozen = False
        self._cache: Dict[Tuple[Optional[str], str], torch.Tensor] = {}

    @property
    def clip(self) -> FrozenClip:
        return self.__dict__["_clip"]

    def forward(self, class_names: Sequence[str], task_name: str) -> torch.Tensor:
        names = list(class_names)
        if not (self.frozen or not self.training):
            return self.text_features(names, task_name)
        key_task = task_name if self.task_dependent else None
        todo = [n for n in dict.fromkeys(names) if (key_task, n) not in self._cache]
        if todo:
            with torch.no_grad():
                features = self.text_features(todo, task_name)
            self._cache.update({(key_task, n): f for n, f in zip(todo, features)})
        return torch.stack([self._cache[(key_task, n)] for n in names]).to(self.clip.device)

    def text_features(self, class_names: List[str], task_name: str) -> torch.Tensor:
        """(K, E) normalised features, always computed (``forward`` adds the cache)."""
        raise NotImplementedError

    def freeze(self) -> None:
        """Stop training the prompt; its features are cached from now on."""
        for param in self.parameters():
            param.requires_grad_(False)
        self.frozen = True
        self._cache.clear()

    def train(self, mode: bool = True) -> "PromptLearner":
        if mode and not self.frozen:
            self._cache.clear()  # the parameters are about to change
        return super().train(mode)

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        self._cache.clear()  # new parameters, new features
        super()._load_from_state_dict(*args, **kwargs)


class LearnablePrompt(PromptLearner):
    """FreeSeg's adaptive prompt (module docstring), with its initialisations (bytedance/FreeSeg,
    mask2former/modeling/clip_adapter/text_prompt.py, ``LearnablePromptExtractor._init_prompt`` /
    ``_init_task_prompt``): class context and suffix vectors N(0, 0.02), task vectors ``kaiming_normal_(a=2)``.
    Parameter names are FreeSeg's (``prefix_prompt``, ``suffix_prompt``, ``task_prompt``), so its stage-1 checkpoints
    load too."""

    def __init__(
        self,
        clip: FrozenClip,
        prompt_dim: int,
        prompt_shape: Tuple[int, int] = (16, 0),
        task_prompt_length: int = 8,
    ) -> None:
        super().__init__(clip)
        if prompt_dim != clip.width:
            raise ConfigError(
                f"MODEL.CLIP_ADAPTER.PROMPT_DIM {prompt_dim} differs from the token width {clip.width} of CLIP "
                f"{clip.name}; set PROMPT_DIM {clip.width}"
            )
        if len(prompt_shape) != 2 or min(prompt_shape) < 0 or task_prompt_length < 0:
            raise ConfigError(
                f"MODEL.CLIP_ADAPTER.PROMPT_SHAPE must be two counts >= 0 and TASK_PROMPT_SHAPE a count >= 0, got "
                f"{list(prompt_shape)} and {task_prompt_length}"
            )
        self.prompt_shape = (int(prompt_shape[0]), int(prompt_shape[1]))
        self.task_prompt_length = int(task_prompt_length)
        self.prefix_prompt = self._vectors(self.prompt_shape[0], prompt_dim, kaiming=False)
        self.suffix_prompt = self._vectors(self.prompt_shape[1], prompt_dim, kaiming=False)
        self.task_prompt = self._vectors(self.task_prompt_length, prompt_dim, kaiming=True)
        self._word_ids: Dict[str, List[int]] = {}

    @staticmethod
    def _vectors(length: int, dim: int, kaiming: bool) -> Optional[nn.Parameter]:
        if length == 0:
            return None
        values = torch.empty(length, dim)
        if kaiming:
            nn.init.kaiming_normal_(values, a=2)
        else:
            nn.init.normal_(values, std=0.02)
        return nn.Parameter(values)

    def _words(self, text: str) -> List[int]:
        if text not in self._word_ids:
            self._word_ids[text] = self.clip.word_ids(text)
        return self._word_ids[text]

    def prompt_embeddings(self, class_names: Sequence[str], task_name: str) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(K, L, D)`` prompt embeddings padded to CLIP's context L and ``(K,)`` end-token indices (length - 1)."""
        clip = self.clip
        n_task, (n_prefix, n_suffix) = self.task_prompt_length, self.prompt_shape
        task_words = self._words(task_name)
        head = task_words + [0] * n_task + [clip.sot_id] + [0] * n_prefix
        tail = [0] * n_suffix + self._words(".") + [clip.eot_id]
        rows, ends, suffix_starts = [], [], []
        for name in class_names:
            sequence = head + self._words(name) + tail
            if len(sequence) > clip.context_length:
                raise ClipError(
                    f"class name {name!r}: its prompt for {task_name!r} is {len(sequence)} tokens ({len(task_words)} "
                    f"task words, {n_task} task vectors, start, {n_prefix} context vectors, "
                    f"{len(self._words(name))} name words, {n_suffix} suffix vectors, '.', end), more than CLIP's "
                    f"context of {clip.context_length}; shorten the name or reduce MODEL.CLIP_ADAPTER.PROMPT_SHAPE"
                )
            rows.append(sequence + [0] * (clip.context_length - len(sequence)))
            ends.append(len(sequence) - 1)
            suffix_starts.append(len(sequence) - len(tail))
        embeds = clip.embed_tokens(torch.tensor(rows, dtype=torch.long))
        k = len(rows)
        start = len(task_words)
        if self.task_prompt is not None:
            embeds[:, start : start + n_task] = self.task_prompt.to(embeds.dtype).expand(k, -1, -1)
        start += n_task + 1
        if self.prefix_prompt is not None:
            embeds[:, start : start + n_prefix] = self.prefix_prompt.to(embeds.dtype).expand(k, -1, -1)
        if self.suffix_prompt is not None:
            columns = torch.tensor(suffix_starts, device=embeds.device)[:, None] + torch.arange(
                n_suffix, device=embeds.device
            )
            rows_index = torch.arange(k, device=embeds.device)[:, None].expand_as(columns)
            embeds[rows_index, columns] = self.suffix_prompt.to(embeds.dtype).expand(k, -1, -1)
        return embeds, torch.tensor(ends, dtype=torch.long, device=embeds.device)

    def text_features(self, class_names: List[str], task_name: str) -> torch.Tensor:
        embeds, ends = self.prompt_embeddings(class_names, task_name)
        return F.normalize(self.clip.encode_embedded_text(embeds, ends), dim=-1)


class PredefinedPrompts(PromptLearner):
    """The mean of the normalised features of ``template.format(name)`` over the templates, normalised again
    (bytedance/FreeSeg, mask2former/modeling/clip_adapter/text_prompt.py, ``PredefinedPromptExtractor``). ``forward``
    takes the task like the learned prompt and ignores it: FreeSeg's version lacks the parameter although its caller
    passes one, and would fail if used."""

    task_dependent = False

    def __init__(self, clip: FrozenClip, templates: Sequence[str]) -> None:
        super().__init__(clip)
        bad = [t for t in templates if "{}" not in t]
        if not templates or bad:
            raise ConfigError(
                "MODEL.CLIP_ADAPTER.PREDEFINED_PROMPT_TEMPLATES must list templates with '{}' where the class name "
                f"goes, e.g. ['a photo of a {{}}.'], got {list(templates)}"
            )
        self.templates = list(templates)
        self.frozen = True  # nothing to learn

    def text_features(self, class_names: List[str], task_name: str) -> torch.Tensor:
        total = None
        for template in self.templates:
            texts = [template.format(name) for name in class_names]
            for name, text in zip(class_names, texts):
                if len(self.clip.word_ids(text)) + 2 > self.clip.context_length:
                    raise ClipError(
                        f"class name {name!r}: {text!r} is longer than CLIP's context of {self.clip.context_length} "
                        "tokens; shorten the name or the template in MODEL.CLIP_ADAPTER.PREDEFINED_PROMPT_TEMPLATES"
                    )
            features = F.normalize(self.clip.encode_text(self.clip.tokenize(texts)), dim=-1)
            total = features if total is None else total + features
        return F.normalize(total / len(self.templates), dim=-1)


def build_prompt_learner(cfg: CfgNode, clip: FrozenClip) -> PromptLearner:
    """MODEL.CLIP_ADAPTER.PROMPT_LEARNER "learnable" (PROMPT_DIM, PROMPT_SHAPE, TASK_PROMPT_SHAPE) or "predefined"
    (PREDEFINED_PROMPT_TEMPLATES); with PROMPT_CHECKPOINT set, stage 1's prompt is loaded and frozen (FreeSeg's
    ``build_prompt_learner``: bytedance/FreeSeg, mask2former/modeling/clip_adapter/__init__.py)."""
    a = cfg.MODEL.CLIP_ADAPTER
    if a.PROMPT_LEARNER == "learnable":
        learner: PromptLearner = LearnablePrompt(clip, a.PROMPT_DIM, tuple(a.PROMPT_SHAPE), a.TASK_PROMPT_SHAPE)
    elif a.PROMPT_LEARNER == "predefined":
        learner = PredefinedPrompts(clip, a.PREDEFINED_PROMPT_TEMPLATES)
    else:
        raise ConfigError(
            f"MODEL.CLIP_ADAPTER.PROMPT_LEARNER must be 'learnable' or 'predefined', got {a.PROMPT_LEARNER!r}"
        )
    if a.PROMPT_CHECKPOINT:
        load_prompt_checkpoint(learner, a.PROMPT_CHECKPOINT)
    return learner


def load_prompt_checkpoint(prompt_learner: PromptLearner, path: str) -> None:
    """Load the ``prompt_learner.*`` tensors of a checkpoint (stage 1's, or any model holding a prompt learner under
    that attribute name, FreeSeg's included) and freeze the prompt.

    FreeSeg loads them with ``strict=False`` (bytedance/FreeSeg, mask2former/modeling/clip_adapter/__init__.py,
    ``build_prompt_learner``), so a checkpoint of other prompt shapes is silently half-loaded; here every parameter
    must be there with its shape.
    """
    own = prompt_learner.state_dict()
    if not own:
        raise ConfigError(
            f"{_CHECKPOINT_KEY} {path} is set, but the predefined prompt has nothing to load; clear it or set "
            "MODEL.CLIP_ADAPTER.PROMPT_LEARNER learnable"
        )
    picked = _prompt_tensors(_read_checkpoint(path))
    if not picked:
        raise ClipError(
            f"{path}: holds no prompt_learner.* tensors; set {_CHECKPOINT_KEY} to the checkpoint of stage 1 "
            "(MODEL.META_ARCHITECTURE ProposalClipClassifier), e.g. its model_final.pth"
        )
    missing = [k for k in own if k not in picked]
    unexpected = [k for k in picked if k not in own and k not in _FREESEG_BUFFERS]
    wrong = [
        f"{k} {tuple(picked[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in picked and picked[k].shape != own[k].shape
    ]
    if missing or unexpected or wrong:
        problems = [
            f"{what}: {', '.join(keys)}"
            for what, keys in (
                ("missing", missing),
                ("not in this prompt", unexpected),
                ("checkpoint vs config shape", wrong),
            )
            if keys
        ]
        raise ClipError(
            f"{path}: its prompt does not fit this config ({'; '.join(problems)}); set MODEL.CLIP_ADAPTER."
            "PROMPT_SHAPE, TASK_PROMPT_SHAPE and PROMPT_DIM as in the stage-1 config"
        )
    prompt_learner.load_state_dict({k: picked[k] for k in own}, strict=True)
    prompt_learner.freeze()


def _read_checkpoint(path: str) -> Dict[Hashable, object]:
    if not os.path.isfile(path):
        raise ClipError(f"{path}: prompt checkpoint not found; set {_CHECKPOINT_KEY} to stage 1's model_final.pth")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as e:
        reason = " ".join(str(e).split())[:200]
        raise ClipError(f"{path}: corrupt or not a PyTorch checkpoint ({reason}); check {_CHECKPOINT_KEY}") from None
    if not isinstance(loaded, dict):
        raise ClipError(f"{path}: expected a checkpoint dict, got {type(loaded).__name__}; check {_CHECKPOINT_KEY}")
    state = loaded.get("model", loaded)
    return state if isinstance(state, dict) else {}


def _prompt_tensors(state: Dict[Hashable, object]) -> Dict[str, torch.Tensor]:
    """``{name after the last 'prompt_learner.' component: tensor}``."""
    picked = {}
    for key, value in state.items():
        parts = str(key).split(".")
        if "prompt_learner" in parts[:-1] and torch.is_tensor(value):
            last = len(parts) - 1 - parts[::-1].index("prompt_learner")
            picked[".".join(parts[last + 1 :])] = value
    return picked
