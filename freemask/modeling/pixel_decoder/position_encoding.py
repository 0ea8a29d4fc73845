"""Fixed 2-D sine position encoding of the DETR family, as the Mask2Former pixel decoder uses it.

Why fixed and normalised: the deformable encoder sees maps of any size (crops of 512, whole images of 2048), so the
encoding is a function of the *relative* position in the map (0..2*pi) rather than of the pixel index; a learned table
would tie the model to one resolution.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["PositionEmbeddingSine"]


class PositionEmbeddingSine(nn.Module):
    """Sine/cosine encoding of the (y, x) position of every pixel, ``(N, C, H, W) -> (N, 2 * num_pos_feats, H, W)``.

    For a coordinate ``t`` (1-based row or column index, divided by the map's height or width and multiplied by
    ``scale`` when ``normalize``) and feature ``k`` in ``[0, num_pos_feats)``::

        d_k = temperature ** (2 * (k // 2) / num_pos_feats)
        enc_k = sin(t / d_k) if k is even else cos(t / d_k)

    Channels ``[0, num_pos_feats)`` encode y and ``[num_pos_feats, 2 * num_pos_feats)`` encode x (official order, so
    the learned layers consuming it stay compatible with released checkpoints). The result depends only on the shape,
    dtype-independent (always float32) and has no parameters.
    """

    def __init__(
        self, num_pos_feats: int = 128, temperature: float = 10000.0, normalize: bool = True, scale: float | None = None
    ) -> None:
        super().__init__()
        if scale is not None and not normalize:
            raise ValueError("PositionEmbeddingSine: scale is only used with normalize=True")
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale

    def forward(self, x: Tensor) -> Tensor:
        """``x``: (N, C, H, W), only its shape and device are used. Returns (N, 2 * num_pos_feats, H, W) float32."""
        n, _, h, w = x.shape
        y_embed = torch.arange(1, h + 1, dtype=torch.float32, device=x.device).view(1, h, 1).expand(n, h, w)
        x_embed = torch.arange(1, w + 1, dtype=torch.float32, device=x.device).view(1, 1, w).expand(n, h, w)
        if self.normalize:
            eps = 1e-6  # the official formula divides by (size + eps); kept so values match to the last bit
            y_embed = y_embed / (h + eps) * self.scale
            x_embed = x_embed / (w + eps) * self.scale
        k = torch.arange(self.num_pos_feats, dtype=torch.float32, device=x.device)
        dim_t = self.temperature ** (2 * torch.div(k, 2, rounding_mode="floor") / self.num_pos_feats)
        pos_y = self._interleave(y_embed[..., None] / dim_t)
        pos_x = self._interleave(x_embed[..., None] / dim_t)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)

    @staticmethod
    def _interleave(angles: Tensor) -> Tensor:
        """(N, H, W, F) angles -> (N, H, W, F) with sin at even and cos at odd feature indices."""
        return torch.stack((angles[..., 0::2].sin(), angles[..., 1::2].cos()), dim=4).flatten(3)
