"""FreeSeg's text-pixel interaction: every pixel of the pixel decoder's outputs attends to the class text features.

As bytedance/FreeSeg, mask2former/modeling/heads/module.py, ``ContextInteraction.forward`` and
``MultiHeadAttention.forward`` compute it: ONE cross-attention (one set of projections, one pixel LayerNorm) serves
the three multi-scale maps and then the mask features, in that order. The pixels of a map, flattened and LayerNorm-ed,
are the queries; the K + 1 text features of the current task (the K class features and the no-object embedding, the
same for every image of the batch) are keys and values, through the same projections' inputs. Attention is
``embed_dim`` wide, split into ``num_heads`` heads, scaled by ``head_dim ** -0.5``, with dropout 0.1 on the attention
weights in training and no mask. The update goes through ``out_proj``, is scaled by a learned per-channel layer scale
(initial 0.1, no drop-path) and is added to the NORMALISED pixels, so the decoder sees
``LN(x) + gamma * attn(LN(x), text)``. The projections are Xavier-uniform with zero biases.

The text LayerNorm: FreeSeg re-applies it to its own output before each map, so the text is normalised once for the
first multi-scale map, twice for the second, three times for the third and four times for the mask features
(``text_norm="repeated"``, what FreeSeg's weights were trained with). ``text_norm="once"`` normalises the text once for
every map: the computation of this project's earlier versions, kept so that models trained with it keep their outputs.
"""

from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

TEXT_NORMS = ("repeated", "once")


class TextPixelInteraction(nn.Module):
    """Pixels ``(N, pixel_dim, H, W)`` cross-attend to text features ``(T, text_dim)``; shapes are kept.

    Args:
        pixel_dim: channels of the pixel decoder's maps (FreeSeg's ``EMB_SIZE``, 256): the multi-scale maps and the
            mask features must all have it.
        text_dim: width of the text features (CLIP's embedding, 512 for ViT-B/16).
        embed_dim: width of the attention (``EMBED_DIM``, 2048), split over ``num_heads`` heads (``NUM_HEADS``, 8).
        use_layer_scale: scale the update by a learned ``gamma`` (``USE_LAYER_SCALE``); ``init_value`` its start.
        dropout: on the attention weights, in training.
        text_norm: "repeated" (FreeSeg) or "once" (MODEL.SEM_SEG_HEAD.INTERACTION_TEXT_NORM, see the module).
    """

    def __init__(
        self,
        pixel_dim: int,
        text_dim: int,
        embed_dim: int = 2048,
        num_heads: int = 8,
        use_layer_scale: bool = True,
        init_value: float = 0.1,
        dropout: float = 0.1,
        text_norm: str = "repeated",
    ) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(
                f"TextPixelInteraction: embed_dim {embed_dim} (MODEL.SEM_SEG_HEAD.EMBED_DIM) must be divisible by "
                f"num_heads {num_heads} (MODEL.SEM_SEG_HEAD.NUM_HEADS)"
            )
        if text_norm not in TEXT_NORMS:
            raise ValueError(
                f"TextPixelInteraction: text_norm {text_norm!r} (MODEL.SEM_SEG_HEAD.INTERACTION_TEXT_NORM) must be "
                f"one of {list(TEXT_NORMS)}"
            )
        self.num_heads = num_heads
        self.dropout = dropout
        self.text_norm_mode = text_norm
        self.pixel_norm = nn.LayerNorm(pixel_dim)
        self.text_norm = nn.LayerNorm(text_dim)
        self.q_proj = nn.Linear(pixel_dim, embed_dim)
        self.k_proj = nn.Linear(text_dim, embed_dim)
        self.v_proj = nn.Linear(text_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, pixel_dim)
        for layer in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.gamma = nn.Parameter(torch.full((pixel_dim,), float(init_value))) if use_layer_scale else None

    def _heads(self, x: Tensor) -> Tensor:
        """(N, L, embed_dim) -> (N, heads, L, head_dim)."""
        return x.view(x.shape[0], x.shape[1], self.num_heads, -1).transpose(1, 2)

    def attend(self, pixels: Tensor, text: Tensor) -> Tensor:
        """One map: ``pixels`` (N, C, H, W) attend to the normalised ``text`` (N, T, text_dim) -> (N, C, H, W)."""
        n, c, h, w = pixels.shape
        q = self.pixel_norm(pixels.flatten(2).transpose(1, 2))  # (N, HW, C)
        drop = self.dropout if self.training else 0.0
        update = F.scaled_dot_product_attention(  # softmax(q k^T / sqrt(head_dim)) v, per head
            self._heads(self.q_proj(q)), self._heads(self.k_proj(text)), self._heads(self.v_proj(text)), dropout_p=drop
        )  # (N, heads, HW, head_dim)
        update = self.out_proj(update.transpose(1, 2).reshape(n, h * w, -1))
        out = q + (self.gamma * update if self.gamma is not None else update)
        return out.transpose(1, 2).reshape(n, c, h, w)

    def forward(
        self, mask_features: Tensor, multi_scale: List[Tensor], text_features: Tensor
    ) -> Tuple[Tensor, List[Tensor]]:
        """``mask_features`` (N, C, H/4, W/4), ``multi_scale`` three (N, C, H_i, W_i) maps (the pixel decoder's order),
        ``text_features`` (T, text_dim) -> the same maps after the interaction: ``(mask_features, multi_scale)``."""
        text = text_features.unsqueeze(0).expand(mask_features.shape[0], -1, -1)  # (N, T, text_dim)
        outputs = []
        for i, pixels in enumerate([*multi_scale, mask_features]):  # FreeSeg's order: multi-scale maps, mask features
            if i == 0 or self.text_norm_mode == "repeated":
                text = self.text_norm(text)
            outputs.append(self.attend(pixels, text))
        return outputs[-1], outputs[:-1]
