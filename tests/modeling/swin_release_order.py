"""A reference forward of our Swin / SeMask Swin modules in the order of the official release
(Swin-Transformer-Semantic-Segmentation, SeMask-FPN's ``SeMaskSwinTransformer``), written step by step for tests.

It reuses only the leaf modules (patch conv, norms, window attention, MLP, merge norm and reduction, semantic
attention) and does every padding, shift, partition, mask and crop itself, where the release does it:

* patch embedding: the image is padded bottom/right to a multiple of the patch size (4), then the conv and norm;
* each Swin block: norm1, padding to a multiple of the window, cyclic shift, windows, attention (the shift mask is
  built for the *padded* size, regions split at -window and -shift), reverse, crop, residual, MLP;
* each semantic layer: norm, padding to the window (none when global), semantic attention, crop; the gated result
  (added to the *normed* tokens) is the stage output and the next stage's input;
* patch merging (at the start of our stages 2-4): an odd side padded by one, neighbours (0,0), (1,0), (0,1), (1,1)
  concatenated, norm, reduction.

Nothing here pads the image to 32, so comparing the model against it at sizes that are not multiples of 32 checks
that the model runs as the release does there.
"""

from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F


def _pad_bottom_right(x: torch.Tensor, multiple: int) -> torch.Tensor:  # (B, H, W, C)
    H, W = x.shape[1:3]
    return F.pad(x, (0, 0, 0, (multiple - W % multiple) % multiple, 0, (multiple - H % multiple) % multiple))


def _windows(x: torch.Tensor, ws: int) -> torch.Tensor:  # (B, Hp, Wp, C) -> (B * nW, ws * ws, C)
    B, Hp, Wp, C = x.shape
    return x.reshape(B, Hp // ws, ws, Wp // ws, ws, C).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, C)


def _unwindow(w: torch.Tensor, ws: int, B: int, Hp: int, Wp: int) -> torch.Tensor:
    C = w.shape[-1]
    return w.reshape(B, Hp // ws, Wp // ws, ws, ws, C).permute(0, 1, 3, 2, 4, 5).reshape(B, Hp, Wp, C)


def shift_mask(Hp: int, Wp: int, ws: int, shift: int) -> torch.Tensor:
    """(nW, ws*ws, ws*ws) with -100 between tokens of different regions of the padded, shifted map."""
    region = torch.zeros(1, Hp, Wp, 1)
    rows = ((0, Hp - ws), (Hp - ws, Hp - shift), (Hp - shift, Hp))
    cols = ((0, Wp - ws), (Wp - ws, Wp - shift), (Wp - shift, Wp))
    label = 0
    for h0, h1 in rows:
        for w0, w1 in cols:
            region[:, h0:h1, w0:w1, :] = label
            label += 1
    ids = _windows(region, ws)[..., 0]
    diff = ids[:, None, :] - ids[:, :, None]
    return torch.where(diff != 0, torch.tensor(-100.0), torch.tensor(0.0))


def patch_embed(pe, images: torch.Tensor) -> torch.Tensor:
    p = pe.proj.kernel_size[0]
    H, W = images.shape[-2:]
    images = F.pad(images, (0, (p - W % p) % p, 0, (p - H % p) % p))
    return pe.norm(pe.proj(images).permute(0, 2, 3, 1))


def swin_block(blk, x: torch.Tensor) -> torch.Tensor:
    B, H, W, C = x.shape
    ws, shift = blk.window_size[0], blk.shift_size[0]
    h = _pad_bottom_right(blk.norm1(x), ws)
    Hp, Wp = h.shape[1:3]
    mask = None
    if shift:
        h = torch.roll(h, shifts=(-shift, -shift), dims=(1, 2))
        mask = shift_mask(Hp, Wp, ws, shift)
    h = _unwindow(blk.attn(_windows(h, ws), mask=mask), ws, B, Hp, Wp)
    if shift:
        h = torch.roll(h, shifts=(shift, shift), dims=(1, 2))
    x = x + h[:, :H, :W]
    return x + blk.mlp(blk.norm2(x))


def patch_merge(ds, x: torch.Tensor) -> torch.Tensor:
    H, W = x.shape[1:3]
    x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
    x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
    return ds.reduction(ds.norm(x))


def semantic_layer(layer, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(tokens for the next stage (B, H, W, C), prior (B, K, H, W)), release order (``residual='normed'``)."""
    B, H, W, C = x.shape
    normed = layer.norm(x)
    ws = layer.window_size
    if ws:
        padded = _pad_bottom_right(normed, ws)
        Hp, Wp = padded.shape[1:3]
        prior, update = layer.attn(_windows(padded, ws))
        prior = _unwindow(prior, ws, B, Hp, Wp)[:, :H, :W]
        update = _unwindow(update, ws, B, Hp, Wp)[:, :H, :W]
    else:
        prior, update = layer.attn(normed.reshape(B, H * W, C))
        prior, update = prior.reshape(B, H, W, -1), update.reshape(B, H, W, C)
    return normed + update, prior.permute(0, 3, 1, 2)


def swin_features(
    backbone, images: torch.Tensor, semantic_layers: Optional[list] = None
) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
    """(features, priors) of a TimmBackbone Swin (``semantic_layers`` None) or a SeMaskSwin, release order."""
    body = backbone.body
    x = patch_embed(body.patch_embed, images)
    features, priors = {}, {}
    for i in range(4):
        stage = getattr(body, f"layers_{i}")
        if i:
            x = patch_merge(stage.downsample, x)
        for blk in stage.blocks:
            x = swin_block(blk, x)
        name = f"res{i + 2}"
        if semantic_layers is not None:
            x, priors[name] = semantic_layer(semantic_layers[i], x)
        features[name] = backbone.out_norms[name](x).permute(0, 3, 1, 2)
    return features, priors
