"""Rectified cross-attention (FreestyleNet) as a diffusers attention processor on every ``attn2`` layer.

In FreestyleNet each caption token of class c may attend only to the pixels of class c, in every cross-attention
layer at every resolution (64², 32², 16², 8² latents for 512 px); the start, end and padding tokens stay open to all
pixels, so no query row is ever fully masked, and pixels of ignored, absent or dropped classes see only those open
tokens. Its unconditional guidance pass runs without the rectification. diffusers batches guidance as
``cat([unconditional, conditional])``, so the mask applies to the second half and the first half stays open.

The rectification is a boolean mask handed to ``F.scaled_dot_product_attention`` (masked scores become -inf before
the softmax, which equals FreestyleNet's fill with ``-finfo.max``: both give exactly zero weight), so the layer keeps
SDPA's fused kernels. Masks are per sample (a batch holds different layouts) and built once per resolution per call.

diffusers flattens the feature map to (B, h*w, C) before the processor and does not pass h and w; they follow from
the latent size and the sequence length: the UNet halves the size (rounding up, as its stride-2 convolutions do) at
each level, so the level is the one whose ceil(H / 2^k) * ceil(W / 2^k) equals the length. This also holds for
non-square latents, where FreestyleNet's sqrt(length) does not.
"""

import math
from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn.functional as F


def level_size(latent_hw: Tuple[int, int], length: int) -> Tuple[int, int]:
    """(h, w) of the UNet level whose flattened feature map has ``length`` positions."""
    height, width = latent_hw
    for k in range(16):
        h, w = math.ceil(height / 2**k), math.ceil(width / 2**k)
        if h * w == length:
            return h, w
        if h * w < length:
            break
    raise ValueError(f"sequence length {length} is no UNet level of a {height}x{width} latent")


class RectificationLayout:
    """The layouts of the batch being generated, shared by every rectified processor of a UNet.

    ``labels``: (B, H, W) int64 training labels at image resolution; ``token_labels``: (B, T) int64, the label each
    text token may see or -1 for open tokens (see :meth:`freemask.generation.captions.Caption.token_labels`);
    ``latent_hw``: the latent size. Unset (``clear``), the processors compute plain cross-attention.
    """

    def __init__(self) -> None:
        self.labels: Optional[torch.Tensor] = None
        self.token_labels: Optional[torch.Tensor] = None
        self.latent_hw: Tuple[int, int] = (0, 0)
        self._allowed: Dict[Tuple[int, str], torch.Tensor] = {}
        self._masks: Dict[Tuple[int, int, str], torch.Tensor] = {}

    def set(self, labels: torch.Tensor, token_labels: torch.Tensor, latent_hw: Tuple[int, int]) -> None:
        if labels.shape[0] != token_labels.shape[0]:
            raise ValueError(f"{labels.shape[0]} label maps for {token_labels.shape[0]} captions")
        self.labels, self.token_labels, self.latent_hw = labels, token_labels, tuple(latent_hw)
        self._allowed, self._masks = {}, {}

    def clear(self) -> None:
        self.labels, self.token_labels = None, None
        self._allowed, self._masks = {}, {}

    @property
    def active(self) -> bool:
        return self.labels is not None

    def allowed(self, length: int, device: torch.device) -> torch.Tensor:
        """(B, 1, length, T) bool: may pixel p of sample b attend to token t, at the level with ``length`` pixels."""
        key = (length, str(device))
        if key not in self._allowed:
            h, w = level_size(self.latent_hw, length)
            # Nearest resizing of the full-resolution label map, as FreestyleNet resizes its 512x512 layout.
            small = F.interpolate(self.labels[:, None].double(), size=(h, w), mode="nearest")[:, 0].long()
            pixels = small.reshape(small.shape[0], h * w, 1).to(device)
            tokens = self.token_labels[:, None, :].to(device)
            self._allowed[key] = ((tokens < 0) | (pixels == tokens))[:, None]
        return self._allowed[key]

    def mask_for(self, batch: int, length: int, device: torch.device) -> torch.Tensor:
        """The SDPA mask of a UNet batch of ``batch`` samples: the layouts' masks, preceded by an all-open half when
        the batch is doubled for classifier-free guidance (unconditional first)."""
        key = (length, batch, str(device))
        if key not in self._masks:
            allowed = self.allowed(length, device)
            if batch == 2 * allowed.shape[0]:
                allowed = torch.cat([torch.ones_like(allowed), allowed])
            elif batch != allowed.shape[0]:
                raise ValueError(f"UNet batch of {batch} for {allowed.shape[0]} layouts")
            self._masks[key] = allowed
        return self._masks[key]


class RectifiedCrossAttnProcessor:
    """Cross-attention of a Stable Diffusion v1 ``attn2`` layer with the rectification of ``layout`` (plain
    attention while the layout is unset). Only the SD-v1 attention options are supported: no group / spatial /
    cross norms, no q/k norms, no residual connection (:func:`install_rectified_attention` checks)."""

    def __init__(self, layout: RectificationLayout) -> None:
        self.layout = layout

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        temb: Optional[torch.Tensor] = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        batch, length, _ = hidden_states.shape
        heads = attn.heads
        q, k, v = attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context)
        q, k, v = (x.view(batch, -1, heads, x.shape[-1] // heads).transpose(1, 2) for x in (q, k, v))
        mask = None
        if self.layout.active and encoder_hidden_states is not None:
            mask = self.layout.mask_for(batch, length, hidden_states.device)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = out.transpose(1, 2).reshape(batch, length, -1).to(q.dtype)
        return attn.to_out[1](attn.to_out[0](out))


def install_rectified_attention(unet: Any, layout: RectificationLayout) -> int:
    """Put a :class:`RectifiedCrossAttnProcessor` on every cross-attention (``attn2``) layer of ``unet`` and SDPA
    on the self-attention ones; returns how many layers are rectified."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    processors, rectified = {}, 0
    modules = dict(unet.named_modules())
    for name in unet.attn_processors:
        if name.endswith("attn2.processor"):
            attn = modules[name[: -len(".processor")]]
            unsupported = [
                option
                for option in ("group_norm", "spatial_norm", "norm_cross", "norm_q", "norm_k")
                if getattr(attn, option, None) is not None
            ] + (["residual_connection"] if getattr(attn, "residual_connection", False) else [])
            if unsupported or getattr(attn, "rescale_output_factor", 1.0) != 1.0:
                raise ValueError(f"{name}: rectified attention supports SD-v1 layers only, not {unsupported}")
            processors[name] = RectifiedCrossAttnProcessor(layout)
            rectified += 1
        else:
            processors[name] = AttnProcessor2_0()
    unet.set_attn_processor(processors)
    return rectified
