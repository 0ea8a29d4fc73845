"""Backbone tables: released ResNet / Swin names -> ours (``backbone.body.<timm name>``, ``backbone.out_norms``).

Facts the tables encode (checked against the sources, and by tests where they are numerical):

* timm's ResNet names equal torchvision's and MMSegmentation's plain ``ResNet``; detectron2 nests the norm under its
  conv (``res2.0.conv1.norm``) and calls the projection ``shortcut``. ``ResNetV1c`` (mmseg) and detectron2's DeepLab
  stem replace the 7x7 stem by three 3x3 convs, which timm's ``resnet50`` does not have.
* detectron2's DeepLab stem (facebookresearch/detectron2, projects/DeepLab/deeplab/resnet.py, ``DeepLabStem``) is
  conv1 (3 -> C/2, stride 2), conv2 (C/2 -> C/2), conv3 (C/2 -> C), each 3x3 without bias and followed by its norm
  and a ReLU, then a 3x3 max pool of stride 2; with C = 128 (``STEM_OUT_CHANNELS``, FreeSeg's R101c) that is timm's
  ``stem_type="deep"`` stem of width 64 (``resnet101s``): ``conv1`` = Sequential(conv, BN, ReLU, conv, BN, ReLU, conv)
  then ``bn1``, so the third norm is ``bn1``. The residual stages are named as in any detectron2 ResNet; res5's
  multi-grid dilations change no name (``tests/checkpoint/test_convert_freeseg.py`` checks the features numerically).
* Official Swin puts patch merging at the *end* of stage i (``layers.i.downsample``); timm at the *start* of stage
  i + 1. Both concatenate the 2x2 neighbours in the order (0,0), (1,0), (0,1), (1,1) (row, column offset), so the
  weights copy as they are.
* MMSegmentation's Swin merges patches with ``nn.Unfold``, whose channels run (channel, row offset, column offset),
  so its merge LayerNorm and reduction columns are permuted with respect to the official order; mmseg's own
  converter applies that permutation to official weights, and :data:`UNFOLD_TO_OFFICIAL` undoes it.
* Swin's ``relative_position_index`` and ``attn_mask`` are derived from the window size; timm rebuilds them.
"""

import torch

from .layout import Variant
from .rules import Drop, Refuse, Rule, Transform

# Neighbour k of the unfold order (row * 2 + column) that official slot g = column * 2 + row holds; an involution.
_OFFICIAL_FROM_UNFOLD = [0, 2, 1, 3]


def _merge_columns_to_official(w: torch.Tensor) -> torch.Tensor:
    """(..., 4C) in unfold order (c, row, col) -> (..., 4C) in official order (col, row, c)."""
    lead, c4 = w.shape[:-1], w.shape[-1]
    w = w.reshape(*lead, c4 // 4, 4).transpose(-1, -2)[..., _OFFICIAL_FROM_UNFOLD, :]
    return w.reshape(*lead, c4).contiguous()


def _merge_columns_to_unfold(w: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_merge_columns_to_official`."""
    lead, c4 = w.shape[:-1], w.shape[-1]
    w = w.reshape(*lead, 4, c4 // 4)[..., _OFFICIAL_FROM_UNFOLD, :].transpose(-1, -2)
    return w.reshape(*lead, c4).contiguous()


UNFOLD_TO_OFFICIAL = Transform(
    "mmseg patch-merging channel order", _merge_columns_to_official, _merge_columns_to_unfold
)

_RECOMPUTED = "buffer derived from the window size; the model rebuilds it"
_DEEP_STEM = (
    "deep stem (three 3x3 convs, mmseg ResNetV1c): our timm ResNet has the 7x7 stem of torchvision's; use a "
    "checkpoint with a plain ResNet backbone"
)

# The basic 7x7 stem; files with a DeepLab stem use DETECTRON2_DEEPLAB_STEM first (a Variant on stem.conv2).
DETECTRON2_RESNET = (
    Rule("backbone.stem.conv1.weight", "backbone.body.conv1.weight"),
    Rule("backbone.stem.conv1.norm.*", "backbone.body.bn1.*"),
    Rule("backbone.res{s+1}.{b}.conv{c}.weight", "backbone.body.layer{s}.{b}.conv{c}.weight"),
    Rule("backbone.res{s+1}.{b}.conv{c}.norm.*", "backbone.body.layer{s}.{b}.bn{c}.*"),
    Rule("backbone.res{s+1}.{b}.shortcut.weight", "backbone.body.layer{s}.{b}.downsample.0.weight"),
    Rule("backbone.res{s+1}.{b}.shortcut.norm.*", "backbone.body.layer{s}.{b}.downsample.1.*"),
)

DETECTRON2_DEEPLAB_STEM = Variant(
    "backbone.stem.conv2.",
    (
        Rule("backbone.stem.conv1.weight", "backbone.body.conv1.0.weight"),
        Rule("backbone.stem.conv1.norm.*", "backbone.body.conv1.1.*"),
        Rule("backbone.stem.conv2.weight", "backbone.body.conv1.3.weight"),
        Rule("backbone.stem.conv2.norm.*", "backbone.body.conv1.4.*"),
        Rule("backbone.stem.conv3.weight", "backbone.body.conv1.6.weight"),
        Rule("backbone.stem.conv3.norm.*", "backbone.body.bn1.*"),
    ),
)

DETECTRON2_SWIN = (
    Drop("backbone.layers.{i}.blocks.{j}.attn.relative_position_index", _RECOMPUTED),
    Drop("backbone.layers.{i}.blocks.{j}.attn_mask", _RECOMPUTED),
    Rule("backbone.patch_embed.*", "backbone.body.patch_embed.*"),
    Rule("backbone.layers.{i}.blocks.*", "backbone.body.layers_{i}.blocks.*"),
    Rule("backbone.layers.{i}.downsample.*", "backbone.body.layers_{i+1}.downsample.*"),
    Rule("backbone.norm{k}.*", "backbone.out_norms.res{k+2}.*"),
)

MMSEG_RESNET = (
    Refuse("backbone.stem.*", _DEEP_STEM),
    Rule("backbone.conv1.*", "backbone.body.conv1.*"),
    Rule("backbone.bn1.*", "backbone.body.bn1.*"),
    Rule("backbone.layer{s}.*", "backbone.body.layer{s}.*"),
)

MMSEG_SWIN = (
    Drop("backbone.stages.{i}.blocks.{j}.attn.w_msa.relative_position_index", _RECOMPUTED),
    Rule("backbone.patch_embed.projection.*", "backbone.body.patch_embed.proj.*"),
    Rule("backbone.patch_embed.norm.*", "backbone.body.patch_embed.norm.*"),
    Rule("backbone.stages.{i}.blocks.{j}.attn.w_msa.*", "backbone.body.layers_{i}.blocks.{j}.attn.*"),
    Rule("backbone.stages.{i}.blocks.{j}.ffn.layers.0.0.*", "backbone.body.layers_{i}.blocks.{j}.mlp.fc1.*"),
    Rule("backbone.stages.{i}.blocks.{j}.ffn.layers.1.*", "backbone.body.layers_{i}.blocks.{j}.mlp.fc2.*"),
    Rule("backbone.stages.{i}.blocks.{j}.norm{n}.*", "backbone.body.layers_{i}.blocks.{j}.norm{n}.*"),
    Rule(
        "backbone.stages.{i}.downsample.reduction.weight",
        "backbone.body.layers_{i+1}.downsample.reduction.weight",
        UNFOLD_TO_OFFICIAL,
    ),
    Rule("backbone.stages.{i}.downsample.norm.*", "backbone.body.layers_{i+1}.downsample.norm.*", UNFOLD_TO_OFFICIAL),
    Rule("backbone.norm{k}.*", "backbone.out_norms.res{k+2}.*"),
)
