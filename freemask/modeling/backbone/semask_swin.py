"""SeMask Swin (Jain et al., 2021): a Swin Transformer whose every stage ends with a *semantic layer*.

The Swin stages are timm's, built exactly as :class:`TimmBackbone` builds them (pad-then-shift windows, local weight
files, per-output LayerNorms), so ImageNet Swin checkpoints load unchanged; the semantic layers are the only new
parameters and start fresh. A semantic layer normalises the tokens and runs *semantic attention* over them: two
projections to the K classes (a query-like ``mlp_cls_q``, whose output is the stage's class prior map, and a key-like
``mlp_cls_k``), attention ``softmax(Q K^T)`` over tokens applied to values ``mlp_v``, an output projection
``mlp_res`` and dropout 0.1, added to the tokens through a learnable scalar ``gamma`` that starts at 0. So at
initialisation the layer adds nothing, and the ImageNet features are kept while the prior maps start learning.

Attention runs inside non-overlapping windows (no shift) of the Swin's window size, except that for embedding widths
96 and 192 (Swin-T/S/L) with more than 19 classes stages 3 and 4 attend globally, as the official release does.

Any input size runs as in the release: the Swin pads to the patch size, per window and at odd patch merges (see
:mod:`.timm_backbone`), and a windowed semantic layer pads its stage to the window and crops back. Padding the image
to 32 first is *not* the same: the padded tokens take part in the attention, globally so in stages 3-4.

The official layer adds ``gamma * attention`` to the *normalised* tokens (``residual="normed"``), so a stage hands on
LayerNorm(x) where plain Swin hands on x; ``residual="input"`` adds it to the stage's own tokens instead, which makes
the whole backbone equal to plain Swin at initialisation. Leaf names (``mlp_cls_q``, ``mlp_cls_k``, ``mlp_v``,
``mlp_res``, ``gamma``) are the official ones.
"""

import logging
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from timm.models.swin_transformer import window_partition, window_reverse
from torch import nn

from ...config import CfgNode, ConfigError
from ..registry import BACKBONE_REGISTRY
from .timm_backbone import TimmBackbone

logger = logging.getLogger(__name__)

ALL_STAGES = ("res2", "res3", "res4", "res5")
RESIDUAL_MODES = ("normed", "input")


def published_global_stages(embed_dim: int, num_classes: int) -> Tuple[int, ...]:
    """Stages (0-based) whose semantic attention is global in the official release: 2 and 3 for embedding widths 96
    and 192 with more than 19 classes (ADE20K, COCO-Stuff), none otherwise (Swin-B, Cityscapes)."""
    return (2, 3) if embed_dim in (96, 192) and num_classes > 19 else ()


class SemanticAttention(nn.Module):
    """Class-prior attention over tokens ``(B, L, C)``: returns the prior ``(B, L, K)`` and the gated update
    ``gamma * Dropout(mlp_res(softmax(Q K^T) V))`` ``(B, L, C)``, which is 0 while ``gamma`` is 0.

    ``softmax(Q K^T)`` is unscaled, as published. ``mlp_res`` is *not* zero-initialised: with it and ``gamma`` both 0
    neither would ever receive a gradient (each one's gradient is proportional to the other), so the update path
    would stay dead; the official code, too, ends up with truncated-normal ``mlp_res`` weights after its model-wide
    initialisation.
    """

    def __init__(self, dim: int, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.mlp_cls_q = nn.Linear(dim, num_classes)
        self.mlp_cls_k = nn.Linear(dim, num_classes)
        self.mlp_v = nn.Linear(dim, dim)
        self.mlp_res = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)
        self.gamma = nn.Parameter(torch.zeros(1))
        for linear in (self.mlp_cls_q, self.mlp_cls_k, self.mlp_v, self.mlp_res):
            nn.init.trunc_normal_(linear.weight, std=0.02)
            nn.init.zeros_(linear.bias)

    def forward(self, tokens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        prior = self.mlp_cls_q(tokens)
        mixed = F.scaled_dot_product_attention(prior, self.mlp_cls_k(tokens), self.mlp_v(tokens), scale=1.0)
        return prior, self.gamma * self.proj_drop(self.mlp_res(mixed))


class SemanticLayer(nn.Module):
    """LayerNorm + semantic attention on a stage's tokens ``(B, H, W, C)``, in windows of ``window_size`` (bottom and
    right padded with zeros after the norm, as officially) or over all tokens (``window_size`` 0).

    Returns the tokens for the next stage ``(B, H, W, C)`` and the class prior map ``(B, K, H, W)`` (logits).
    """

    def __init__(self, dim: int, num_classes: int, window_size: int, residual: str = "normed") -> None:
        super().__init__()
        if residual not in RESIDUAL_MODES:
            raise ConfigError(f"MODEL.BACKBONE.SEMASK.RESIDUAL must be one of {RESIDUAL_MODES}, got {residual!r}")
        self.norm = nn.LayerNorm(dim)
        self.attn = SemanticAttention(dim, num_classes)
        self.window_size = window_size
        self.residual = residual

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        normed = self.norm(x)
        B, H, W, C = normed.shape
        ws = self.window_size
        if ws:
            padded = F.pad(normed, (0, 0, 0, (-W) % ws, 0, (-H) % ws))
            Hp, Wp = padded.shape[1:3]
            prior, update = self.attn(window_partition(padded, (ws, ws)).flatten(1, 2))
            prior = window_reverse(prior.view(-1, ws, ws, prior.shape[-1]), (ws, ws), Hp, Wp)[:, :H, :W]
            update = window_reverse(update.view(-1, ws, ws, C), (ws, ws), Hp, Wp)[:, :H, :W]
        else:
            prior, update = self.attn(normed.reshape(B, H * W, C))
            prior, update = prior.view(B, H, W, -1), update.view(B, H, W, C)
        base = normed if self.residual == "normed" else x
        return base + update, prior.permute(0, 3, 1, 2).contiguous()


@BACKBONE_REGISTRY.register()
class SeMaskSwin(TimmBackbone):
    """A timm Swin (``model_name``: swin_tiny/small_patch4_window7_224, swin_base/large_patch4_window12_384, ...) with
    one :class:`SemanticLayer` per stage. :meth:`forward_with_priors` gives the features ``{res2..res5: (N, C, H/s,
    W/s)}`` and the class prior maps ``{res2..res5: (N, K, H/s, W/s)}``; :meth:`forward` the features only, so any
    head can use it as a plain backbone.

    Args:
        num_classes: K, the width of the prior maps (the dataset's classes).
        semantic_window_size: window of the semantic attention; 0 = the Swin's own window.
        global_stages: 0-based stages whose semantic attention is global; None = the published rule
            (:func:`published_global_stages`).
        residual: "normed" (official) or "input" (identity at initialisation); see the module docstring.
        Other arguments are :class:`TimmBackbone`'s.
    """

    def __init__(
        self,
        model_name: str,
        num_classes: int,
        *,
        out_features: Sequence[str] = ALL_STAGES,
        pretrained: str = "",
        freeze_at: int = 0,
        drop_path_rate: float = 0.0,
        window_size: int = 0,
        swin_size: Sequence[Any] = (),
        semantic_window_size: int = 0,
        global_stages: Optional[Sequence[int]] = None,
        residual: str = "normed",
    ) -> None:
        if tuple(out_features) != ALL_STAGES:
            raise ConfigError(
                f"MODEL.BACKBONE.OUT_FEATURES must be {list(ALL_STAGES)} for SeMaskSwin (every stage has a semantic "
                f"layer and the SeMask head reads all four), got {list(out_features)}"
            )
        if TimmBackbone._model_kwargs(model_name, 0) == {}:
            raise ConfigError(f"MODEL.BACKBONE.TIMM_NAME {model_name!r} is not a Swin; SeMaskSwin needs a swin_* model")
        if num_classes < 1:
            raise ConfigError(f"SeMaskSwin needs MODEL.BACKBONE.SEMASK.NUM_CLASSES >= 1, got {num_classes}")
        super().__init__(
            model_name,
            out_features=out_features,
            pretrained=pretrained,
            freeze_at=freeze_at,
            drop_path_rate=drop_path_rate,
            window_size=window_size,
            swin_size=swin_size,
        )
        self.num_classes = num_classes
        self._stage_names = [name for name, _ in self.body.named_children()][1:]  # after patch_embed
        dims = self.body.feature_info.channels()
        swin_window = self.body.layers_0.blocks[0].window_size[0]
        window = semantic_window_size or swin_window
        if global_stages is None:
            global_stages = published_global_stages(dims[0], num_classes)
        self.semantic_layers = nn.ModuleList(
            SemanticLayer(dim, num_classes, 0 if i in global_stages else window, residual) for i, dim in enumerate(dims)
        )
        for layer in self.semantic_layers[: max(freeze_at - 1, 0)]:  # a frozen stage keeps its semantic layer too
            layer.requires_grad_(False)
        if pretrained:
            logger.info("SeMaskSwin: the %d semantic layers are not in %s and start fresh", len(dims), pretrained)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        b = cfg.MODEL.BACKBONE
        s = b.SEMASK
        if b.NORM != "BN":
            raise ConfigError(f"MODEL.BACKBONE.NORM must be BN for SeMaskSwin (Swin has no batch norm), got {b.NORM!r}")
        return {
            "model_name": b.TIMM_NAME,
            "num_classes": s.NUM_CLASSES,
            "out_features": tuple(b.OUT_FEATURES),
            "pretrained": b.PRETRAINED,
            "freeze_at": b.FREEZE_AT,
            "drop_path_rate": b.DROP_PATH_RATE,
            "window_size": b.WINDOW_SIZE,
            "swin_size": b.SWIN_SIZE,
            "semantic_window_size": s.WINDOW_SIZE,
            "residual": s.RESIDUAL,
        }

    def forward_with_priors(self, images: torch.Tensor) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
        """``images`` (N, 3, H, W), any size -> (features, prior maps), both keyed res2..res5 at ceil(H / stride)."""
        x = self.body.patch_embed(images)
        features, priors = {}, {}
        for stage_name, layer, name in zip(self._stage_names, self.semantic_layers, ALL_STAGES):
            x, priors[name] = layer(getattr(self.body, stage_name)(x))
            features[name] = self.out_norms[name](x).permute(0, 3, 1, 2)
        return features, priors

    def forward(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        return self.forward_with_priors(images)[0]
