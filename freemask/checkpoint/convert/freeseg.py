"""FreeSeg stage-2 checkpoints (bytedance/FreeSeg, ``OpenVocabulary``): ``{"model": {name: tensor}, ...}`` (.pth).

FreeSeg's model (bytedance/FreeSeg, mask2former/open_vocabulary_model.py, ``OpenVocabulary``) is detectron2's
Mask2Former with a ResNet backbone (R50: basic stem; R101c: DeepLab stem, ``backbones.py``), whose head
(mask2former/modeling/heads/mask_former_interaction_head.py, ``MaskFormerInteractionHead``) holds Mask2Former's
``pixel_decoder`` and ``predictor`` (the open decoder: an MLP ``class_embed``) and the text-pixel ``interaction``
(mask2former/modeling/heads/module.py, ``ContextInteraction``), plus a ``clip_adapter``
(mask2former/modeling/clip_adapter/adapter.py, ``MaskFormerClipAdapter``) holding OpenAI's CLIP (``clip_model``, the
vendored third_party/CLIP; open_clip's ``CLIP`` uses OpenAI's parameter names), the prompt learner
(mask2former/modeling/clip_adapter/text_prompt.py, ``LearnablePromptExtractor``) and the no-object embedding.

The interaction renames one to one: its pre-norms ``layer_norm_q_1`` (pixels) / ``layer_norm_k_1`` (text) are our
``pixel_norm`` / ``text_norm``, and its ``MultiHeadAttention`` has separate q / k / v / out projections with biases,
heads split as ours, the query scaled by head_dim^-0.5 as in scaled dot-product attention, so ``attn.{q,k,v,out}_proj``
are our ``{q,k,v,out}_proj``.
"""

import torch

from .backbones import DETECTRON2_DEEPLAB_STEM, DETECTRON2_RESNET
from .detectron2_mask2former import HEAD
from .layout import Fill, Layout
from .rules import Drop, Rule

_SIGNAL = (
    "CLIP token embeddings of the start token, '.', the end token and padding, which our prompt learner reads from "
    "CLIP's embedding table"
)
_CLIP_NORMALISATION = "CLIP's input mean and std, constants of our FrozenClip"

FREESEG = (
    *(Drop(f"clip_adapter.prompt_learner.{name}_signal", _SIGNAL) for name in ("start", "dot", "end", "pad")),
    Drop("clip_adapter.pixel_mean", _CLIP_NORMALISATION),
    Drop("clip_adapter.pixel_std", _CLIP_NORMALISATION),
    *(
        Rule(f"clip_adapter.prompt_learner.{name}_prompt", f"prompt_learner.{name}_prompt")
        for name in ("prefix", "suffix", "task")
    ),
    Rule("clip_adapter.non_object_embedding", "no_object_embedding"),
    Rule("clip_adapter.clip_model.*", "clip.model.*"),
    Rule("sem_seg_head.interaction.layer_norm_q_1.*", "interaction.pixel_norm.*"),
    Rule("sem_seg_head.interaction.layer_norm_k_1.*", "interaction.text_norm.*"),
    *(
        Rule(f"sem_seg_head.interaction.attn.{name}_proj.*", f"interaction.{name}_proj.*")
        for name in ("q", "k", "v", "out")
    ),
    Rule("sem_seg_head.interaction.gamma", "interaction.gamma"),
)

TRAIN_STEP = Fill(
    "train_step",
    "the step counter of our task sampler; FreeSeg keeps none, its tasks are drawn unseeded; 0 starts the sequence",
    lambda: torch.zeros((), dtype=torch.int64),
)

CLIP_NOTE = (
    "the result holds FreeSeg's frozen CLIP (clip.model.*, OpenAI's ViT-B/16 weights), which MODEL.WEIGHTS loads over "
    'whatever MODEL.CLIP_ADAPTER.CLIP_WEIGHTS gave: CLIP_WEIGHTS may be left empty ("") for evaluation and '
    "fine-tuning from it; keep MODEL.CLIP_ADAPTER.CLIP_MODEL_NAME ViT-B-16-quickgelu (OpenAI's weights need QuickGELU)"
)

LAYOUT = Layout(
    name="freeseg",
    family="detectron2",
    description="FreeSeg stage-2 release (.pth with 'model', sem_seg_head.interaction.* and clip_adapter.* keys)",
    weights_key="model",
    marker="sem_seg_head.interaction.",
    table=DETECTRON2_RESNET + FREESEG + HEAD,
    variants=(DETECTRON2_DEEPLAB_STEM,),
    fills=(TRAIN_STEP,),
    note=CLIP_NOTE,
)
