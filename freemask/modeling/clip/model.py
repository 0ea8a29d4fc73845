"""CLIP on open-clip-torch, frozen, with the two entry points FreeSeg needs: text from token embeddings, image crops.

FreeSeg vendors a modified OpenAI CLIP and loads it with ``clip.load`` (a download: bytedance/FreeSeg,
mask2former/modeling/clip_adapter/clip.py, ``build_clip_model``). Here the architecture is built by name with
``open_clip.create_model(name, pretrained=None)`` (random weights, no network), and the weights come from a local file
through :mod:`.weights`. open_clip is imported only when a CLIP is built: the package takes seconds to import, and
every other model of the project would otherwise pay for it.

The text path takes token embeddings rather than token ids, because FreeSeg's prompt mixes learned vectors with
word embeddings (bytedance/FreeSeg, mask2former/modeling/clip_adapter/text_prompt.py, ``LearnablePromptExtractor``):
open_clip's ``encode_text`` finds the end token by the argmax of the ids, which learned vectors do not have, so the
end-token index is passed explicitly, and the causal mask is passed to the batch-first transformer as open_clip does
(mlfoundations/open_clip, src/open_clip/model.py, ``CLIP.encode_text``; OpenAI's blocks hold it internally:
bytedance/FreeSeg, third_party/CLIP/clip/model.py, ``ResidualAttentionBlock``).
"""

import logging
import math
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ...config import CfgNode
from .errors import ClipError
from .weights import architecture_signature, describe_signature, read_state_dict, split_openai_marker

if TYPE_CHECKING:  # pragma: no cover
    from open_clip.model import CLIP

logger = logging.getLogger(__name__)

# A tiny random CLIP for tests and the toy configs (3.4 M parameters, most of them the 49408-word embedding table the
# real tokenizer needs): token width 64, 2 text and 2 vision layers, 64 px images, embedding 64.
TINY_CLIP_NAME = "freemask-tiny-clip"
_TINY = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}
# The same with OpenAI's activation, so that the QuickGELU guard can be tested both ways on the tiny model.
_TINY_CONFIGS = {TINY_CLIP_NAME: _TINY, f"{TINY_CLIP_NAME}-quickgelu": {**_TINY, "quick_gelu": True}}
_NAME_KEY = "MODEL.CLIP_ADAPTER.CLIP_MODEL_NAME"
_WEIGHTS_KEY = "MODEL.CLIP_ADAPTER.CLIP_WEIGHTS"
# open_clip config entries that make building or tokenising reach the Hugging Face hub or pretrained timm weights.
_DOWNLOADING_KEYS = ("hf_model_name", "hf_tokenizer_name", "hf_model_pretrained")


def build_clip(model_name: str, weights: str = "", allow_torchscript: bool = False) -> "FrozenClip":
    """The frozen CLIP ``model_name`` (an open_clip architecture or :data:`TINY_CLIP_NAME`) with the weights of the
    local file ``weights`` ("" = random weights, for tests). See :mod:`.weights` for the files accepted.

    The file is read and checked against the architecture's config before the model is built, so a wrong file fails
    in a fraction of a second rather than after building ViT-B/16.
    """
    config = _model_config(model_name)
    state, is_openai = split_openai_marker(read_state_dict(weights, allow_torchscript)) if weights else ({}, False)
    if is_openai and not config.get("quick_gelu", False):
        raise ClipError(
            f"{weights}: holds OpenAI's CLIP weights, which were trained with QuickGELU, but {_NAME_KEY} {model_name} "
            f"uses nn.GELU (it would load without error and give wrong features); set {_NAME_KEY} "
            f"{_quickgelu_name(model_name)}"
        )
    import open_clip

    if model_name in _TINY_CONFIGS:
        model = open_clip.model.CLIP(**config)
        tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=config["text_cfg"]["context_length"])
    else:
        model = open_clip.create_model(model_name, pretrained=None)
        tokenizer = open_clip.get_tokenizer(model_name)
    if not isinstance(model, open_clip.model.CLIP) or model.text_pool_type != "argmax" or model.attn_mask is None:
        raise ClipError(
            f"{_NAME_KEY} {model_name}: its text tower is not a causal transformer pooled at the end token, which "
            "FreeSeg's prompts need; use an OpenAI-style CLIP such as ViT-B-16-quickgelu"
        )
    if weights:
        _load_exactly(model, model_name, weights, state, is_openai)
    elif model_name not in _TINY_CONFIGS:
        # A converted FreeSeg checkpoint (or one of ours) carries CLIP, and its strict load fills these weights.
        logger.warning(
            "CLIP %s is built without weights (%s is empty): they must come from MODEL.WEIGHTS (a converted FreeSeg "
            "checkpoint carries CLIP); training from random CLIP weights is for tests only",
            model_name,
            _WEIGHTS_KEY,
        )
    return FrozenClip(model, tokenizer, model_name)


def _model_config(model_name: str) -> Dict[str, Any]:
    """open_clip's config of ``model_name``; ClipError for a name that is unknown or would need a download."""
    if model_name in _TINY_CONFIGS:
        return _TINY_CONFIGS[model_name]
    if ":" in model_name:
        raise ClipError(
            f"{_NAME_KEY} {model_name}: hub and directory names are not read (nothing is downloaded); give an "
            f"open_clip architecture name such as ViT-B-16-quickgelu and the weights file in {_WEIGHTS_KEY}"
        )
    from open_clip.factory import get_model_config, list_models

    if model_name not in list_models():
        hint = model_name.replace("/", "-")
        suggestion = f"{hint}-quickgelu" if f"{hint}-quickgelu" in list_models() else "ViT-B-16-quickgelu"
        raise ClipError(
            f"{_NAME_KEY} {model_name}: not an open_clip architecture; did you mean {suggestion}? (open_clip spells "
            f"names with dashes, OpenAI's weights need the -quickgelu variant, {TINY_CLIP_NAME} is the tiny test model)"
        )
    config = get_model_config(model_name)
    text, vision = config.get("text_cfg", {}), config.get("vision_cfg", {})
    needs_hub = [k for k in _DOWNLOADING_KEYS if text.get(k)]
    if vision.get("timm_model_pretrained"):
        needs_hub.append("timm_model_pretrained")
    if needs_hub:
        raise ClipError(
            f"{_NAME_KEY} {model_name}: building it would download ({', '.join(needs_hub)}); use an architecture "
            "with open_clip's own text tower and tokenizer, such as ViT-B-16-quickgelu"
        )
    return config


def _load_exactly(model: "CLIP", model_name: str, path: str, state: Dict[str, torch.Tensor], is_openai: bool) -> None:
    """Load ``state`` (read from ``path``) into ``model`` built as ``model_name``: every tensor, every shape, or a
    ClipError naming the file, the architecture it holds and the configured one."""
    expected = model.state_dict()
    if "logit_scale" in state and state["logit_scale"].dim() != expected["logit_scale"].dim():
        state["logit_scale"] = state["logit_scale"].reshape(expected["logit_scale"].shape)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        in_file = architecture_signature(state)
        matches = _names_with_signature(in_file, is_openai)
        named = f" (open_clip: {', '.join(matches)})" if matches else ""
        detail = "; ".join(
            f"{what} {', '.join(keys[:2])}{' ...' if len(keys) > 2 else ''}"
            for what, keys in (("missing", missing), ("unexpected", unexpected), ("other shape", wrong))
            if keys
        )
        raise ClipError(
            f"{path}: the file holds {describe_signature(in_file)}{named}, but {_NAME_KEY} {model_name} is "
            f"{describe_signature(architecture_signature(expected))} ({detail}); set {_NAME_KEY} to the file's "
            "architecture or give weights of the configured one"
        )
    model.load_state_dict(state, strict=True)
    logger.info("Loaded CLIP %s weights from %s%s", model_name, path, " (OpenAI)" if is_openai else "")


def _quickgelu_name(model_name: str) -> str:
    from open_clip.factory import list_models

    candidate = f"{model_name}-quickgelu"
    return candidate if candidate in list_models() or candidate in _TINY_CONFIGS else "ViT-B-16-quickgelu"


def _names_with_signature(signature: Optional[Tuple[int, ...]], is_openai: bool) -> List[str]:
    """Known architecture names whose config has ``signature`` (QuickGELU variants first for OpenAI weights)."""
    if signature is None:
        return []
    from open_clip.factory import get_model_config, list_models

    names = []
    for name in list(_TINY_CONFIGS) + list_models():
        config = _TINY_CONFIGS.get(name) or get_model_config(name) or {}
        vision, text = config.get("vision_cfg", {}), config.get("text_cfg", {})
        if not isinstance(vision.get("layers"), int) or "patch_size" not in vision:
            continue
        candidate = (
            config.get("embed_dim"),
            vision["layers"],
            vision.get("width"),
            vision["patch_size"],
            vision.get("image_size"),
            text.get("layers"),
            text.get("width"),
            text.get("context_length", 77),
        )
        if candidate == signature:
            names.append(name)
    names.sort(key=lambda n: ("quickgelu" not in n) if is_openai else ("quickgelu" in n))
    return names[:3]


class FrozenClip(nn.Module):
    """An open_clip ``CLIP`` whose parameters never train and which stays in eval mode whatever its owner does.

    Attributes: ``embed_dim`` (E, the joint text-image space), ``width`` (D, the text token width), ``image_size``
    (S, the input side of ``encode_image``), ``context_length`` (L), ``pixel_mean`` / ``pixel_std`` (RGB in 0..1),
    ``sot_id`` / ``eot_id`` (start / end token ids), ``name`` (the architecture).
    """

    def __init__(self, model: "CLIP", tokenizer: Any, name: str) -> None:
        super().__init__()
        from open_clip import get_model_preprocess_cfg
        from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

        self.model = model
        self._tokenizer = tokenizer
        self.name = name
        for param in self.model.parameters():
            param.requires_grad_(False)
        self.width = int(model.token_embedding.weight.shape[1])
        projection = model.text_projection
        self.embed_dim = int(projection.out_features if isinstance(projection, nn.Linear) else projection.shape[1])
        size = model.visual.image_size
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.context_length = int(model.positional_embedding.shape[0])
        preprocess = get_model_preprocess_cfg(model)
        self.pixel_mean = tuple(float(v) for v in preprocess.get("mean", OPENAI_DATASET_MEAN))
        self.pixel_std = tuple(float(v) for v in preprocess.get("std", OPENAI_DATASET_STD))
        self.sot_id = int(tokenizer.sot_token_id)
        self.eot_id = int(tokenizer.eot_token_id)
        self.train(False)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> "FrozenClip":
        """The CLIP of MODEL.CLIP_ADAPTER.{CLIP_MODEL_NAME, CLIP_WEIGHTS, ALLOW_TORCHSCRIPT} (built, not kwargs: a
        CLIP is a value shared by the prompt learner, the region classifier and the model that registers it)."""
        a = cfg.MODEL.CLIP_ADAPTER
        return build_clip(a.CLIP_MODEL_NAME, a.CLIP_WEIGHTS, a.ALLOW_TORCHSCRIPT)

    def train(self, mode: bool = True) -> "FrozenClip":
        """Always eval: CLIP's features must not depend on whether the model around it is training."""
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return self.model.positional_embedding.device

    # ------------------------------------------------------------------------------------------------------ text
    def word_ids(self, text: str) -> List[int]:
        """BPE ids of ``text`` without start / end tokens and without truncation."""
        return list(self._tokenizer.encode(text))

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, L) int64 ids: start token, the text, end token, 0-padding (long texts are cut at L, as CLIP does)."""
        return self._tokenizer(list(texts)).to(self.device)

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """(N, L) ids -> (N, L, D) token embeddings (frozen: no gradient)."""
        return self.model.token_embedding(ids.to(self.device)).detach()

    def encode_embedded_text(self, embeds: torch.Tensor, eot_index: torch.Tensor) -> torch.Tensor:
        """(N, L, D) token embeddings with the end token of row i at ``eot_index[i]`` -> (N, E), not normalised.

        Positions after the last end token are dropped before the transformer: under the causal mask they cannot
        change the end-token features (measured on open_clip 3.3.0's ViT-B-16, CPU: equal to 2.5e-6, 6x faster for
        171 COCO-Stuff prompts cut from 77 to 10 tokens).
        Gradients flow to ``embeds`` (the prompt learner's vectors) through the frozen weights.
        """
        model = self.model
        eot_index = eot_index.to(embeds.device).long()
        length = int(eot_index.max()) + 1
        cast = model.transformer.get_cast_dtype()
        x = embeds[:, :length].to(cast) + model.positional_embedding[:length].to(cast)
        mask = model.attn_mask[:length, :length]
        batch_first = getattr(model.transformer, "batch_first", True)
        x = model.transformer(x if batch_first else x.transpose(0, 1), attn_mask=mask)
        x = model.ln_final(x if batch_first else x.transpose(0, 1))
        x = x[torch.arange(x.shape[0], device=x.device), eot_index]
        projection = model.text_projection
        if isinstance(projection, nn.Linear):
            return projection(x)
        return x if projection is None else x @ projection

    def end_token_index(self, ids: torch.Tensor) -> torch.Tensor:
        """(N,) position of the first end token of each row of ``ids`` (N, L)."""
        return ids.eq(self.eot_id).int().argmax(dim=1)

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        """(N, L) token ids -> (N, E), not normalised: open_clip's ``encode_text`` through the embedding path."""
        return self.encode_embedded_text(self.embed_tokens(ids), self.end_token_index(ids))

    # ----------------------------------------------------------------------------------------------------- image
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) CLIP-normalised images -> (N, E), not normalised (no gradient: CLIP and images are fixed).

        An input other than S x S is read on position embeddings interpolated to its patch grid, as FreeSeg's CLIP
        reads its 244 x 224 stage-1 crops (bytedance/FreeSeg, third_party/CLIP/clip/model.py,
        ``VisionTransformer.forward``); at S x S this is open_clip's own ``encode_image``.
        """
        images = images.to(self.device)
        with torch.no_grad():
            if tuple(images.shape[-2:]) == (self.image_size, self.image_size):
                return self.model.encode_image(images)
            visual = self.model.visual
            patch = visual.conv1.stride
            grid = (images.shape[-2] // patch[0], images.shape[-1] // patch[1])
            positions = grid_position_embedding(visual.positional_embedding, grid)
            return torch.func.functional_call(visual, {"positional_embedding": positions}, (images,))

    def normalize_image(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) RGB in 0..255 -> CLIP-normalised."""
        mean = images.new_tensor(self.pixel_mean).view(1, 3, 1, 1) * 255.0
        std = images.new_tensor(self.pixel_std).view(1, 3, 1, 1) * 255.0
        return (images - mean) / std

    def resize_image(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, 3, S, S) bicubic, as FreeSeg resizes regions (``align_corners=True``: bytedance/FreeSeg,
        mask2former/modeling/clip_adapter/adapter.py, ``MaskFormerClipAdapter._preprocess_image``); unchanged when
        already S x S."""
        if tuple(images.shape[-2:]) == (self.image_size, self.image_size):
            return images
        size = (self.image_size, self.image_size)
        return F.interpolate(images, size=size, mode="bicubic", align_corners=True)


def grid_position_embedding(embedding: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
    """A ViT's (1 + g * g, D) position embedding (class token first) for a ``grid`` (gh, gw) of patches: the g x g
    part resized bicubically with ``align_corners=True``, as FreeSeg's CLIP does (the identity at g x g)."""
    side = math.isqrt(embedding.shape[0] - 1)
    patches = embedding[1:].t().reshape(1, -1, side, side)
    patches = F.interpolate(patches, size=grid, mode="bicubic", align_corners=True)
    return torch.cat([embedding[:1], patches.reshape(embedding.shape[1], -1).t()])
