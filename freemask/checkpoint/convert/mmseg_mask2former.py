"""FreeMask's MMSegmentation 1.x Mask2Former checkpoints: ``{"state_dict": ..., "meta": ...}``.

mmseg's ``Mask2FormerHead`` is mmdet 3.x's head over mmcv modules, so the same weights sit under other names:

* pixel decoder: ``input_convs[k]`` (ConvModule: ``conv`` + ``gn``) is official ``input_proj[k]`` and
  ``level_encoding[k]`` is ``level_embed[k]``; both count from the coarsest level (mmdet builds them from
  ``in_channels[-1]`` down), as the official code does. Encoder layers are mmcv ``self_attn`` (same four linear
  layers as official MSDeformAttn), ``ffn.layers.0.0`` / ``ffn.layers.1`` (linear1 / linear2) and ``norms.0/1``.
  ``lateral_convs[k]`` / ``output_convs[k]`` are applied to input level k in mmdet's forward, which official calls
  ``adapter_{k+1}`` / ``layer_{k+1}``; ``mask_feature`` is ``mask_features``.
* transformer decoder: layer l runs cross-attention, ``norms.0``, self-attention, ``norms.1``, FFN, ``norms.2``
  (official keeps each norm inside its sub-layer); mmcv's attention wraps ``nn.MultiheadAttention`` as ``.attn``;
  ``post_norm`` is ``decoder_norm``; ``cls_embed`` is ``class_embed``; ``mask_embed`` is a Sequential with ReLUs
  between the linears, so its linears are 0, 2, 4 where official's MLP has 0, 1, 2; ``decoder_input_projs`` is
  ``input_proj`` (Identity, no keys, when widths agree). Query and level embeddings keep their names.
"""

from .backbones import MMSEG_RESNET, MMSEG_SWIN
from .layout import Layout
from .rules import Rule

_PD = "decode_head.pixel_decoder"
_ENC_SRC = _PD + ".encoder.layers.{l}"
_ENC = "pixel_decoder.transformer.encoder.layers.{l}"
_DEC_SRC = "decode_head.transformer_decoder.layers.{l}"
_CROSS = "transformer_decoder.transformer_cross_attention_layers.{l}"
_SELF = "transformer_decoder.transformer_self_attention_layers.{l}"
_FFN = "transformer_decoder.transformer_ffn_layers.{l}"

PIXEL_DECODER = (
    Rule(_PD + ".input_convs.{k}.conv.*", "pixel_decoder.input_proj.{k}.0.*"),
    Rule(_PD + ".input_convs.{k}.gn.*", "pixel_decoder.input_proj.{k}.1.*"),
    Rule(_PD + ".level_encoding.weight", "pixel_decoder.transformer.level_embed"),
    Rule(_ENC_SRC + ".self_attn.*", _ENC + ".self_attn.*"),
    Rule(_ENC_SRC + ".ffn.layers.0.0.*", _ENC + ".linear1.*"),
    Rule(_ENC_SRC + ".ffn.layers.1.*", _ENC + ".linear2.*"),
    Rule(_ENC_SRC + ".norms.{n}.*", _ENC + ".norm{n+1}.*"),
    Rule(_PD + ".lateral_convs.{k}.conv.weight", "pixel_decoder.adapter_{k+1}.weight"),
    Rule(_PD + ".lateral_convs.{k}.conv.bias", "pixel_decoder.adapter_{k+1}.bias"),
    Rule(_PD + ".lateral_convs.{k}.gn.*", "pixel_decoder.adapter_{k+1}.norm.*"),
    Rule(_PD + ".output_convs.{k}.conv.weight", "pixel_decoder.layer_{k+1}.weight"),
    Rule(_PD + ".output_convs.{k}.conv.bias", "pixel_decoder.layer_{k+1}.bias"),
    Rule(_PD + ".output_convs.{k}.gn.*", "pixel_decoder.layer_{k+1}.norm.*"),
    Rule(_PD + ".mask_feature.*", "pixel_decoder.mask_features.*"),
)

TRANSFORMER_DECODER = (
    Rule(_DEC_SRC + ".cross_attn.attn.*", _CROSS + ".multihead_attn.*"),
    Rule(_DEC_SRC + ".norms.0.*", _CROSS + ".norm.*"),
    Rule(_DEC_SRC + ".self_attn.attn.*", _SELF + ".self_attn.*"),
    Rule(_DEC_SRC + ".norms.1.*", _SELF + ".norm.*"),
    Rule(_DEC_SRC + ".ffn.layers.0.0.*", _FFN + ".linear1.*"),
    Rule(_DEC_SRC + ".ffn.layers.1.*", _FFN + ".linear2.*"),
    Rule(_DEC_SRC + ".norms.2.*", _FFN + ".norm.*"),
    Rule("decode_head.transformer_decoder.post_norm.*", "transformer_decoder.decoder_norm.*"),
    Rule("decode_head.query_embed.*", "transformer_decoder.query_embed.*"),
    Rule("decode_head.query_feat.*", "transformer_decoder.query_feat.*"),
    Rule("decode_head.level_embed.*", "transformer_decoder.level_embed.*"),
    Rule("decode_head.cls_embed.*", "transformer_decoder.class_embed.*"),
    Rule("decode_head.mask_embed.{k*2}.*", "transformer_decoder.mask_embed.layers.{k}.*"),
    Rule("decode_head.decoder_input_projs.{k}.*", "transformer_decoder.input_proj.{k}.*"),
)

LAYOUT = Layout(
    name="mmseg_mask2former",
    family="mmseg",
    description="FreeMask's MMSegmentation Mask2Former (.pth with 'state_dict', decode_head.* keys)",
    weights_key="state_dict",
    marker=_PD + ".level_encoding.",
    table=MMSEG_RESNET + MMSEG_SWIN + PIXEL_DECODER + TRANSFORMER_DECODER,
)
