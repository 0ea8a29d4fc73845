"""Official SeMask-FPN checkpoints (Picsart-AI-Research/SeMask-Segmentation, MMSegmentation 0.x):
``{"state_dict": {name: tensor}, "meta": ..., "optimizer": ...}``.

Facts the table encodes (the release's ``SeMaskSwinTransformer`` and ``BranchFPNHead``):

* the Swin is the official segmentation Swin (``backbone.patch_embed``, ``backbone.layers.{i}.blocks``, patch merging
  at the *end* of stage i as ``layers.{i}.downsample``, out norms ``norm{i}``), named as in detectron2's Swin, so its
  rules are the same: merging moves to the start of our stage i + 1 (both concatenate the 2x2 neighbours in the order
  (0,0), (1,0), (0,1), (1,1)), ``norm{i}`` is our ``out_norms.res{i+2}``;
* each stage's semantic layer is ``layers.{i}.semantic_layer``: its LayerNorm ``norm1`` is our
  ``semantic_layers.{i}.norm`` and its one semantic-attention block ``class_injection.0`` (leaves ``mlp_cls_q``,
  ``mlp_cls_k``, ``mlp_v``, ``mlp_res``, ``gamma``) our ``semantic_layers.{i}.attn``; windowed and global layers
  carry the same parameters. Released models have one block per stage (``num_sem_blocks`` [1, 1, 1, 1]);
* ``decode_head.scale_heads.{i}`` is a Sequential of (ConvModule, 2x Upsample) pairs, exactly our
  ``sem_seg_head.towers.{i}`` with the same indices; a ConvModule's ``conv`` / ``bn`` (bias-free conv, SyncBN) are
  ``0`` / ``1`` of ours. The prior decoder (``cls_scale_heads``) has only upsamplings, so no parameters;
  ``conv_seg`` keeps its name.

For SeMask Swin-T at 150 classes that is 265 tensors (244 parameters and the head's 21 BatchNorm buffers) beside the
12 relative-position-index buffers, which the model rebuilds from the window size.
"""

from .layout import Layout
from .rules import Drop, Refuse, Rule

_LAYER = "backbone.layers.{i}"
_REBUILT = "buffer derived from the window size; the model rebuilds it"

SEMASK_SWIN = (
    Drop(_LAYER + ".blocks.{j}.attn.relative_position_index", _REBUILT),
    Rule("backbone.patch_embed.*", "backbone.body.patch_embed.*"),
    Rule(_LAYER + ".blocks.*", "backbone.body.layers_{i}.blocks.*"),
    Rule(_LAYER + ".downsample.*", "backbone.body.layers_{i+1}.downsample.*"),
    Rule(_LAYER + ".semantic_layer.norm1.*", "backbone.semantic_layers.{i}.norm.*"),
    Rule(_LAYER + ".semantic_layer.class_injection.0.*", "backbone.semantic_layers.{i}.attn.*"),
    Refuse(
        _LAYER + ".semantic_layer.class_injection.*",
        "more than one semantic-attention block per stage (num_sem_blocks > 1); ours has one, as every released model",
    ),
    Rule("backbone.norm{k}.*", "backbone.out_norms.res{k+2}.*"),
)

BRANCH_FPN_HEAD = (
    Rule("decode_head.scale_heads.{i}.{j}.conv.*", "sem_seg_head.towers.{i}.{j}.0.*"),
    Rule("decode_head.scale_heads.{i}.{j}.bn.*", "sem_seg_head.towers.{i}.{j}.1.*"),
    Rule("decode_head.conv_seg.*", "sem_seg_head.conv_seg.*"),
)

LAYOUT = Layout(
    name="mmseg_semask",
    family="mmseg",
    description="official SeMask-FPN (.pth with 'state_dict', backbone.layers.{i}.semantic_layer.* keys)",
    weights_key="state_dict",
    marker="backbone.layers.0.semantic_layer.",
    table=SEMASK_SWIN + BRANCH_FPN_HEAD,
)
