"""FreeMask's MMSegmentation SegFormer checkpoints (MiT-B2/B4): ``{"state_dict": {name: tensor}, "meta": ...}``.

Facts the table encodes (MMSegmentation's ``MixVisionTransformer`` and ``SegformerHead``, and the parameter list the
FreeMask training logs print):

* stage i is ``backbone.layers.{i}``, a list of three: ``0`` the overlapping patch embedding (``projection`` conv,
  ``norm``), ``1`` the blocks, ``2`` the stage LayerNorm. Ours gathers the same parts as ``stages.{i}.patch_embed``,
  ``.blocks``, ``.norm``.
* a block's attention wraps ``nn.MultiheadAttention`` as ``attn.attn``: its ``in_proj_weight`` (3C, C) stacks the
  query, key and value projections, and since keys and values read the same (reduced) map, rows C..3C are exactly our
  ``kv`` (keys first); the spatial reduction (``attn.sr``, ``attn.norm``) keeps its names.
* Mix-FFN is one ``Sequential`` (1x1 conv, 3x3 depth-wise conv, GELU, dropout, 1x1 conv, dropout), so its weights sit
  at ``ffn.layers.0``, ``.1`` and ``.4``; the 1x1 convs are our linear ``fc1`` / ``fc2``, the same numbers in a
  (out, in, 1, 1) shape.
* the head's ``ConvModule`` s name their conv and BatchNorm ``conv`` / ``bn``, which are ``0`` / ``1`` of ours.

The FreeMask SegFormer-B2/B4 heads are 256 wide (MMSegmentation's configs keep the B0 decoder for every size, unlike
the paper's 768 for B2..B5), as ``configs/common/segformer.yaml`` sets; with ``MODEL.SEGFORMER.DECODER_DIM 0`` (the
paper's widths) the check reports every head tensor as a shape mismatch.
"""

import torch

from .layout import Layout
from .rules import Rule, Split, Transform


def _conv1x1_to_linear(w: torch.Tensor) -> torch.Tensor:
    """(out, in, 1, 1) -> (out, in); a wider kernel keeps its shape, so the model check reports it."""
    return w.squeeze(-1).squeeze(-1) if w.dim() == 4 and w.shape[-2:] == (1, 1) else w


def _linear_to_conv1x1(w: torch.Tensor) -> torch.Tensor:
    return w.reshape(*w.shape, 1, 1)


CONV1X1_AS_LINEAR = Transform("1x1 conv weight as a linear weight", _conv1x1_to_linear, _linear_to_conv1x1)

_BLOCK_SRC = "backbone.layers.{i}.1.{j}"
_BLOCK = "backbone.stages.{i}.blocks.{j}"

MMSEG_MIT = (
    Rule("backbone.layers.{i}.0.projection.*", "backbone.stages.{i}.patch_embed.proj.*"),
    Rule("backbone.layers.{i}.0.norm.*", "backbone.stages.{i}.patch_embed.norm.*"),
    Rule(_BLOCK_SRC + ".norm{n}.*", _BLOCK + ".norm{n}.*"),
    Split(_BLOCK_SRC + ".attn.attn.in_proj_weight", (_BLOCK + ".attn.q.weight", _BLOCK + ".attn.kv.weight"), (1, 2)),
    Split(_BLOCK_SRC + ".attn.attn.in_proj_bias", (_BLOCK + ".attn.q.bias", _BLOCK + ".attn.kv.bias"), (1, 2)),
    Rule(_BLOCK_SRC + ".attn.attn.out_proj.*", _BLOCK + ".attn.proj.*"),
    Rule(_BLOCK_SRC + ".attn.sr.*", _BLOCK + ".attn.sr.*"),
    Rule(_BLOCK_SRC + ".attn.norm.*", _BLOCK + ".attn.norm.*"),
    Rule(_BLOCK_SRC + ".ffn.layers.0.weight", _BLOCK + ".mlp.fc1.weight", CONV1X1_AS_LINEAR),
    Rule(_BLOCK_SRC + ".ffn.layers.0.bias", _BLOCK + ".mlp.fc1.bias"),
    Rule(_BLOCK_SRC + ".ffn.layers.1.*", _BLOCK + ".mlp.dwconv.*"),
    Rule(_BLOCK_SRC + ".ffn.layers.4.weight", _BLOCK + ".mlp.fc2.weight", CONV1X1_AS_LINEAR),
    Rule(_BLOCK_SRC + ".ffn.layers.4.bias", _BLOCK + ".mlp.fc2.bias"),
    Rule("backbone.layers.{i}.2.*", "backbone.stages.{i}.norm.*"),
)

SEGFORMER_HEAD = (
    Rule("decode_head.convs.{k}.conv.*", "sem_seg_head.convs.{k}.0.*"),
    Rule("decode_head.convs.{k}.bn.*", "sem_seg_head.convs.{k}.1.*"),
    Rule("decode_head.fusion_conv.conv.*", "sem_seg_head.fusion_conv.0.*"),
    Rule("decode_head.fusion_conv.bn.*", "sem_seg_head.fusion_conv.1.*"),
    Rule("decode_head.conv_seg.*", "sem_seg_head.conv_seg.*"),
)

LAYOUT = Layout(
    name="mmseg_segformer",
    family="mmseg",
    description="FreeMask's MMSegmentation SegFormer (.pth with 'state_dict', backbone.layers.{i}.{0,1,2}.* keys)",
    weights_key="state_dict",
    marker="backbone.layers.0.0.projection.",
    table=MMSEG_MIT + SEGFORMER_HEAD,
)
