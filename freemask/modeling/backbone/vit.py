"""A plain Vision Transformer (timm's ``VisionTransformer``) as a single-scale backbone, as Segmenter uses it.

The encoder of Segmenter (Strudel et al., 2021) is an ImageNet ViT whose final, layer-normalised patch tokens form a
``(N, C, H / patch, W / patch)`` map; the class token is dropped. Two things differ from classification:

* the position table is sized for the training crop (512 -> 32x32 for patch 16) when the model is built, and
  pre-trained tables (24x24 for the 384 ImageNet models) are resampled to it when weights are loaded;
* any other input size (whole-image inference, small images) resamples the table on the fly.

Both resamplings use MMSegmentation's interpolation (bicubic, ``align_corners=False``, no anti-aliasing), which
trained the FreeMask Segmenter checkpoints; timm's own on-the-fly path anti-aliases, a different bicubic kernel, so
this module runs the few lines of the ViT forward itself rather than calling ``forward_features``.
"""

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import timm
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer

from ...config import CfgNode
from ..registry import BACKBONE_REGISTRY
from .base import Backbone, ShapeSpec
from .weights import LoadReport, WeightFileError, check_local_file, read_state_dict

logger = logging.getLogger(__name__)


def resize_pos_embed(
    pos_embed: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int], num_prefix_tokens: int
) -> torch.Tensor:
    """Resample a ``(1, prefix + old_h * old_w, C)`` position table to ``new_grid``; prefix (class) rows are kept.

    Bicubic with ``align_corners=False`` and no anti-aliasing, as MMSegmentation's ``resize_pos_embed``. The table is
    returned as is when the grid does not change.
    """
    if tuple(old_grid) == tuple(new_grid):
        return pos_embed
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    channels = grid.shape[-1]
    grid = grid.reshape(1, *old_grid, channels).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=tuple(new_grid), mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, -1, channels).to(pos_embed.dtype)
    return torch.cat([prefix, grid], dim=1)


@dataclass
class ViTLoadReport(LoadReport):
    """:class:`LoadReport` plus the position-table resampling, which changes weights without changing their name."""

    pos_embed_resized: tuple[tuple[int, int], tuple[int, int]] | None = None

    def summary(self) -> str:
        text = super().summary()
        if self.pos_embed_resized:
            (oh, ow), (nh, nw) = self.pos_embed_resized
            text += f"\n  pos_embed resampled from a {oh}x{ow} to a {nh}x{nw} grid (bicubic)"
        return text


def load_vit_weights(vit: VisionTransformer, path: str) -> ViTLoadReport:
    """Load a timm-layout ViT state dict (.pth or .safetensors) into ``vit``, resampling ``pos_embed`` to its grid.

    Tensors are matched by name; absent, extra (e.g. the classification ``head``) and differently shaped tensors are
    listed in the report rather than failing, because a partial load is legitimate (a new head) but must be visible.
    """
    state = read_state_dict(path)
    target = vit.state_dict()
    report = ViTLoadReport(path=path, loaded=0)
    prefix = vit.num_prefix_tokens
    table = state.get("pos_embed")
    if table is not None and table.dim() == 3 and table.shape[1] != target["pos_embed"].shape[1]:
        side = math.isqrt(table.shape[1] - prefix)
        if side * side != table.shape[1] - prefix:
            raise WeightFileError(
                f"{path}: pos_embed has {table.shape[1]} rows, not {prefix} class row(s) plus a square grid; "
                "is this a timm ViT checkpoint with a class token?"
            )
        grid = tuple(vit.patch_embed.grid_size)
        state["pos_embed"] = resize_pos_embed(table, (side, side), grid, prefix)
        report.pos_embed_resized = ((side, side), grid)
    loadable: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key not in target:
            report.unexpected.append(key)
        elif value.shape != target[key].shape:
            report.mismatched.append((key, tuple(value.shape), tuple(target[key].shape)))
        else:
            loadable[key] = value
    vit.load_state_dict(loadable, strict=False)
    report.loaded = len(loadable)
    report.missing = sorted(k for k in target if k not in loadable)
    return report


@BACKBONE_REGISTRY.register()
class ViTBackbone(Backbone):
    """timm ViT (e.g. ``vit_small_patch16_384``, ``vit_base_patch16_384``) returning its final normalised patch tokens.

    Args:
        model_name: a timm ViT with a class token that has a row in the position table (the original ViT and the
            AugReg models Segmenter used; not DeiT-3 or register-token models).
        img_size: (height, width) the position table is built for: the training crop.
        pretrained: local timm-layout weight file, "" for random initialisation.
        drop_path_rate: stochastic depth at the last block (linearly increasing from 0, timm's rule).
        out_features: the one output name, ``res{log2(patch)}`` (``res4`` for patch 16), as strides name features
            for every backbone here.
    """

    def __init__(
        self,
        model_name: str,
        img_size: Sequence[int] = (512, 512),
        pretrained: str = "",
        drop_path_rate: float = 0.0,
        out_features: Sequence[str] = ("res4",),
    ) -> None:
        super().__init__()
        if pretrained:
            check_local_file(pretrained)
        unsuitable = ValueError(
            f"MODEL.BACKBONE.TIMM_NAME={model_name!r}: ViTBackbone needs a timm VisionTransformer with a class token, "
            "a class row in its position table, no register tokens and square power-of-two patches "
            "(e.g. vit_small_patch16_384, vit_base_patch16_384)"
        )
        try:
            vit = timm.create_model(
                model_name,
                img_size=tuple(img_size),
                num_classes=0,
                global_pool="",
                drop_path_rate=drop_path_rate,
                dynamic_img_size=True,  # accept any input size (the table is resampled in forward)
                dynamic_img_pad=True,  # pad bottom/right to a patch multiple, as MMSegmentation's "corner" padding
            )
        except RuntimeError as e:  # timm's "Unknown model"
            raise ValueError(f"MODEL.BACKBONE.TIMM_NAME={model_name!r} is not a timm model ({e})") from None
        except TypeError:  # a family without ViT arguments (img_size, dynamic_img_size, ...)
            raise unsuitable from None
        if not isinstance(vit, VisionTransformer) or vit.cls_token is None or vit.pos_embed is None:
            raise unsuitable
        patch, patch_w = vit.patch_embed.patch_size
        if vit.reg_token is not None or vit.no_embed_class or patch != patch_w or patch & (patch - 1):
            raise unsuitable
        name = f"res{patch.bit_length() - 1}"
        if list(out_features) != [name]:
            raise ValueError(
                f"MODEL.BACKBONE.OUT_FEATURES for {model_name} must be ['{name}'], got {list(out_features)}"
            )
        self.vit = vit
        self._name = name
        self._shape = ShapeSpec(vit.embed_dim, patch)
        if pretrained:
            logger.info(load_vit_weights(vit, pretrained).summary())

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        """The position table's size is ``MODEL.BACKBONE.VIT.IMG_SIZE``, MMSegmentation's ``img_size`` (the builder
        fills an unset one with the training crop)."""
        b = cfg.MODEL.BACKBONE
        return {
            "model_name": b.TIMM_NAME,
            "img_size": tuple(b.VIT.IMG_SIZE),
            "pretrained": b.PRETRAINED,
            "drop_path_rate": b.DROP_PATH_RATE,
            "out_features": b.OUT_FEATURES,
        }

    def output_shape(self) -> dict[str, ShapeSpec]:
        return {self._name: self._shape}

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """``images`` (N, 3, H, W) -> ``{res4: (N, C, ceil(H / 16), ceil(W / 16))}`` for patch 16."""
        vit = self.vit
        x = vit.patch_embed(images)  # (N, h, w, C)
        n, h, w, c = x.shape
        pos_embed = resize_pos_embed(vit.pos_embed, vit.patch_embed.grid_size, (h, w), vit.num_prefix_tokens)
        x = torch.cat([vit.cls_token.expand(n, -1, -1), x.reshape(n, h * w, c)], dim=1) + pos_embed
        x = vit.norm(vit.blocks(vit.norm_pre(vit.pos_drop(x))))
        tokens = x[:, vit.num_prefix_tokens :]
        return {self._name: tokens.transpose(1, 2).reshape(n, c, h, w)}
