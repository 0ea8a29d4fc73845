"""FreeMask's MMSegmentation Segmenter checkpoints (ViT-S/B, mask transformer): ``{"state_dict": ..., "meta": ...}``.

Facts the table encodes (MMSegmentation's ``VisionTransformer`` and ``SegmenterMaskTransformerHead``, and the
parameter list the FreeMask training logs print):

* encoder and decoder layers are the same MMSegmentation ``TransformerEncoderLayer``: LayerNorms ``ln1`` / ``ln2``,
  attention wrapping ``nn.MultiheadAttention`` as ``attn.attn`` (its ``in_proj`` stacks q, k, v as timm's fused
  ``qkv`` does, so it renames without a reshape; ``out_proj`` is ``proj``), and an FFN ``Sequential`` whose first
  linear sits inside a (linear, activation, dropout) group: ``ffn.layers.0.0`` and ``ffn.layers.1`` are ``mlp.fc1``
  and ``mlp.fc2``. Encoder layers become timm's ``backbone.vit.blocks``, decoder layers our head's ``blocks``.
* the encoder's final LayerNorm is a top-level ``ln1`` (timm's ``norm``); its patch embedding conv is ``projection``.
* ``pos_embed`` is stored at the *training-crop* grid: MMSegmentation builds the table for ``img_size`` (512 in every
  FreeMask config: 32x32 patches plus the class row, (1, 1025, C)) and resamples the ImageNet table when it loads
  it. Our ViTBackbone sizes its table by ``MODEL.BACKBONE.VIT.IMG_SIZE`` (unset: the crop, 512 in the Segmenter
  configs), so the two agree and the converter never resamples: the converted file holds exactly the trained
  numbers, other input sizes are resampled by the model at run time, and a config with another table size gets a
  shape mismatch from the check.
* the head's other parameters carry the same names in both codebases. Older MMSegmentation versions kept the base
  head's unused ``conv_seg`` classifier in the checkpoint; it is dropped.
"""

from .layout import Layout
from .rules import Drop, Rule


def _transformer_layers(source: str, ours: str) -> tuple[Rule, ...]:
    """Rules for MMSegmentation encoder layers under ``source`` (with ``{l}``) onto timm blocks under ``ours``."""
    return (
        Rule(source + ".ln{n}.*", ours + ".norm{n}.*"),
        Rule(source + ".attn.attn.in_proj_weight", ours + ".attn.qkv.weight"),
        Rule(source + ".attn.attn.in_proj_bias", ours + ".attn.qkv.bias"),
        Rule(source + ".attn.attn.out_proj.*", ours + ".attn.proj.*"),
        Rule(source + ".ffn.layers.0.0.*", ours + ".mlp.fc1.*"),
        Rule(source + ".ffn.layers.1.*", ours + ".mlp.fc2.*"),
    )


MMSEG_VIT = (
    Rule("backbone.patch_embed.projection.*", "backbone.vit.patch_embed.proj.*"),
    Rule("backbone.cls_token", "backbone.vit.cls_token"),
    Rule("backbone.pos_embed", "backbone.vit.pos_embed"),
    *_transformer_layers("backbone.layers.{l}", "backbone.vit.blocks.{l}"),
    Rule("backbone.ln1.*", "backbone.vit.norm.*"),
)

MASK_TRANSFORMER_HEAD = (
    Drop("decode_head.conv_seg.*", "the base head's classifier, unused by the mask transformer"),
    *_transformer_layers("decode_head.layers.{l}", "sem_seg_head.blocks.{l}"),
    *(
        Rule(f"decode_head.{name}.*", f"sem_seg_head.{name}.*")
        for name in ("dec_proj", "decoder_norm", "patch_proj", "classes_proj", "mask_norm")
    ),
    Rule("decode_head.cls_emb", "sem_seg_head.cls_emb"),
)

LAYOUT = Layout(
    name="mmseg_segmenter",
    family="mmseg",
    description="FreeMask's MMSegmentation Segmenter (.pth with 'state_dict', decode_head.classes_proj.*)",
    weights_key="state_dict",
    marker="decode_head.classes_proj.",  # not cls_emb: a prefix of Mask2Former's cls_embed
    table=MMSEG_VIT + MASK_TRANSFORMER_HEAD,
)
