"""Mask2Former's decoder whose class head projects each query into CLIP's text space (FreeSeg's open decoder).

bytedance/FreeSeg, mask2former/modeling/transformer/open_transformer_predictor.py, ``OpenTransformerPredictor``: the
linear ``class_embed`` (HIDDEN_DIM -> K + 1) is replaced by ``MLP(HIDDEN_DIM -> EMBED_HIDDEN_DIM -> EMBEDDING_DIM,
EMBED_LAYERS layers)``, so ``pred_logits`` of every prediction (final and auxiliary) is a query embedding
``(N, Q, EMBEDDING_DIM)`` that the model scores against text features; no layer depends on the number of classes. A
subclass, so the plain decoder keeps the official checkpoints' keys. Layer count: our ``DEC_LAYERS`` counts layers, so
FreeSeg's 10 masked-attention layers (its predictor passes DEC_LAYERS 10 unchanged) are ``DEC_LAYERS: 10`` here too,
with 10 auxiliary predictions.
"""

from ...config import CfgNode
from .mask2former_decoder import MLP, MultiScaleMaskedTransformerDecoder


class OpenVocabMaskedTransformerDecoder(MultiScaleMaskedTransformerDecoder):
    """As :class:`MultiScaleMaskedTransformerDecoder`, with ``pred_logits`` query embeddings ``(N, Q, embedding_dim)``.

    Args:
        embedding_dim: width of the query embeddings (EMBEDDING_DIM; CLIP's text embedding width).
        embed_hidden_dim, embed_layers: the MLP's hidden width and number of Linear layers.
        kwargs: the plain decoder's arguments except ``num_classes``.
    """

    def __init__(
        self, in_channels: int = 256, *, embedding_dim: int, embed_hidden_dim: int, embed_layers: int, **kwargs
    ) -> None:
        super().__init__(in_channels, num_classes=0, **kwargs)
        hidden_dim = self.query_feat.embedding_dim
        self.class_embed = MLP(hidden_dim, embed_hidden_dim, embedding_dim, embed_layers)

    @classmethod
    def from_config(cls, cfg: CfgNode, in_channels: int, mask_classification: bool = True) -> dict:
        """The plain decoder's keys plus MODEL.SEM_SEG_HEAD.{EMBEDDING_DIM, EMBED_HIDDEN_DIM, EMBED_LAYERS}."""
        args = super().from_config(cfg, in_channels, mask_classification)
        del args["num_classes"]
        head = cfg.MODEL.SEM_SEG_HEAD
        return {
            **args,
            "embedding_dim": head.EMBEDDING_DIM,
            "embed_hidden_dim": head.EMBED_HIDDEN_DIM,
            "embed_layers": head.EMBED_LAYERS,
        }
