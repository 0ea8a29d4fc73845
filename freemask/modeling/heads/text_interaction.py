"""FreeSeg's text-pixel interaction: every pixel of the pixel decoder's outputs attends to the class text features.

FREESEG_SPEC 1.3 (``ContextInteraction``): ONE cross-attention, shared by the three multi-scale maps and the mask
features. The pixels of a map, flattened and LayerNorm-ed, are the queries; the K + 1 text features of the current
task (the K class features and the no-object embedding, the same for every image of the batch), LayerNorm-ed, are
keys and values. The update is scaled by a learned per-channel layer scale (initial 0.1) and added to the NORMALISED
pixels (not to the input features), so the decoder sees ``LN(x) + gamma * attn(LN(x), LN(t))``. Attention is
``embed_dim`` wide with ``num_heads`` heads and dropout 0.1 on the attention weights, the projections Xavier-uniform
with zero biases, as FreeSeg's.

One difference, on purpose: FreeSeg's loop re-applies the text LayerNorm to its own output before each of the four
maps (the text is normalised 1, 2, 3 and 4 times); here the text is normalised once and the same keys serve all maps.
"""

from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class TextPixelInteraction(nn.Module):
    """Pixels ``(N, pixel_dim, H, W)`` cross-attend to text features ``(T, text_dim)``; shapes are kept.

    Args:
        pixel_dim: channels of the pixel decoder's maps (FreeSeg's ``EMB_SIZE``, 256): the multi-scale maps and the
            mask features must all have it.
        text_dim: width of the text features (CLIP's embedding, 512 for ViT-B/16).
        embed_dim: width of the attention (``EMBED_DIM``, 2048), split over ``num_heads`` heads (``NUM_HEADS``, 8).
        use_layer_scale: scale the update by a learned ``gamma`` (``USE_LAYER_SCALE``); ``init_value`` its start.
        dropout: on the attention weights, in training.
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
    ) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(
                f"TextPixelInteraction: embed_dim {embed_dim} (MODEL.SEM_SEG_HEAD.EMBED_DIM) must be divisible by "
                f"num_heads {num_heads} (MODEL.SEM_SEG_HEAD.NUM_HEADS)"
            )
        self.num_heads = num_heads
        self.dropout = dropout
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

    def attend(self, pixels: Tensor, keys: Tensor, values: Tensor) -> Tensor:
        """One map: ``pixels`` (N, C, H, W), projected ``keys`` / ``values`` (N, heads, T, d) -> (N, C, H, W)."""
        n, c, h, w = pixels.shape
        q = self.pixel_norm(pixels.flatten(2).transpose(1, 2))  # (N, HW, C)
        queries = self.q_proj(q).view(n, h * w, self.num_heads, -1).transpose(1, 2)  # (N, heads, HW, d)
        drop = self.dropout if self.training else 0.0
        update = F.scaled_dot_product_attention(queries, keys, values, dropout_p=drop)  # (N, heads, HW, d)
        update = self.out_proj(update.transpose(1, 2).reshape(n, h * w, -1))
        out = q + (self.gamma * update if self.gamma is not None else update)
        return out.transpose(1, 2).reshape(n, c, h, w)

    def forward(
        self, mask_features: Tensor, multi_scale: List[Tensor], text_features: Tensor
    ) -> Tuple[Tensor, List[Tensor]]:
        """``mask_features`` (N, C, H/4, W/4), ``multi_scale`` three (N, C, H_i, W_i) maps, ``text_features``
        (T, text_dim) -> the same maps after the interaction: ``(mask_features, multi_scale)``."""
        n = mask_features.shape[0]
        text = self.text_norm(text_features).unsqueeze(0).expand(n, -1, -1)  # (N, T, text_dim)
        keys = self.k_proj(text).view(n, text.shape[1], self.num_heads, -1).transpose(1, 2)
        values = self.v_proj(text).view(n, text.shape[1], self.num_heads, -1).transpose(1, 2)
        return self.attend(mask_features, keys, values), [self.attend(x, keys, values) for x in multi_scale]
