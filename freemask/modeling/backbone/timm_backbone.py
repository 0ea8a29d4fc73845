"""Any timm model with ``features_only`` support as a backbone: ResNets and Swin Transformers (T/S/B/L).

Swin is built the way segmentation uses it rather than the way ImageNet classification does: any input size (the
image is padded bottom/right to a multiple of the patch size, 4, at the patch embedding; every stage pads to a multiple
of its window before partitioning and crops back after; patch merging pads an odd side by one), windows that keep
their size and shift at every stage even when a stage is smaller than the window (``always_partition``), feature maps
padded to a multiple of the window *before* the cyclic shift, and a LayerNorm on every output. That is the official
Swin segmentation backbone (Swin-Transformer-Semantic-Segmentation, Mask2Former's ``D2SwinTransformer``), so its
trained weights give the same features here, at multiples of 32 and at any other size.
"""

import logging
import math
from typing import Any, Dict, List, Sequence, Tuple

import timm
import torch
import torch.nn.functional as F
from timm.layers import freeze_batch_norm_2d
from timm.models import model_entrypoint
from timm.models.swin_transformer import SwinTransformerBlock, window_partition, window_reverse
from torch import nn

from ...config import CfgNode
from ..registry import BACKBONE_REGISTRY
from .base import Backbone, ShapeSpec
from .weights import check_local_file, load_timm_weights

logger = logging.getLogger(__name__)

_SWIN_MODULE = "timm.models.swin_transformer"


def _feature_name(stride: int) -> str:
    """detectron2's naming: stride 4 -> res2, 8 -> res3, 16 -> res4, 32 -> res5."""
    return f"res{int(math.log2(stride))}"


class _PadThenShiftSwinBlock(SwinTransformerBlock):
    """timm's Swin block with the official segmentation order: pad to a window multiple, then shift.

    timm shifts first and pads after, which gives different windows (and attention masks) whenever a stage's
    size is not a multiple of the window, e.g. every stage of a 512x512 crop with window 7 (128, 64, 32, 16).
    Weights trained with the official code expect the padded-then-shifted windows, which this computes.
    """

    def _attn(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, H, W, C), already normalised
        _, H, W, C = x.shape
        wh, ww = self.window_size
        x = F.pad(x, (0, 0, 0, (-W) % ww, 0, (-H) % wh))
        shifted = any(self.shift_size)
        if shifted:
            x = torch.roll(x, shifts=(-self.shift_size[0], -self.shift_size[1]), dims=(1, 2))
        _, Hp, Wp, _ = x.shape
        windows = window_partition(x, self.window_size).view(-1, self.window_area, C)
        mask = self.get_attn_mask(x) if shifted else None  # regions of the padded, shifted map, as officially
        windows = self.attn(windows, mask=mask).view(-1, wh, ww, C)
        x = window_reverse(windows, self.window_size, Hp, Wp)
        if shifted:
            x = torch.roll(x, shifts=self.shift_size, dims=(1, 2))
        return x[:, :H, :W, :].contiguous()


def _dilate_res5(body: nn.Module, model_name: str, multi_grid: Sequence[int]) -> None:
    """Give res5's i-th block a 3x3 convolution of dilation ``multi_grid[i]`` (padding alike, so sizes stay), as
    detectron2's DeepLab ResNet with RES5_MULTI_GRID and RES5_DILATION 1 (the stride stays 2)."""
    blocks = list(getattr(body, "layer4", ()))
    if not blocks or not all(hasattr(b, "conv2") for b in blocks):
        raise ValueError(f"MODEL.BACKBONE.RES5_MULTI_GRID applies to ResNets; {model_name} has no ResNet res5 stage")
    if len(multi_grid) != len(blocks):
        raise ValueError(
            f"MODEL.BACKBONE.RES5_MULTI_GRID has {len(multi_grid)} values but {model_name}'s res5 has {len(blocks)} "
            "blocks; give one dilation per block"
        )
    for block, dilation in zip(blocks, multi_grid):
        block.conv2.dilation = (int(dilation), int(dilation))
        block.conv2.padding = (int(dilation), int(dilation))


@BACKBONE_REGISTRY.register()
class TimmBackbone(Backbone):
    """A timm feature extractor whose outputs are named by stride (``res2`` = stride 4 ... ``res5`` = stride 32).

    ``window_size`` (Swin only; 0 keeps the model's) changes the attention window; pre-trained relative position
    bias tables are then resized by timm. Pre-trained weights come only from a local file (see ``weights.py``):
    this project never downloads at run time, so a hub name or URL is refused with a message saying to download
    the file and pass its path. Swin's per-output LayerNorms (``out_norms``) are not in ImageNet checkpoints and
    start freshly initialised (scale 1, shift 0), as in the official segmentation Swin.
    """

    def __init__(
        self,
        model_name: str,
        out_features: Sequence[str] = ("res2", "res3", "res4", "res5"),
        pretrained: str = "",
        freeze_at: int = 0,
        norm: str = "BN",
        drop_path_rate: float = 0.0,
        window_size: int = 0,
        swin_size: Sequence[Any] = (),
        res5_multi_grid: Sequence[int] = (),
    ) -> None:
        super().__init__()
        if pretrained:
            check_local_file(pretrained)
        kwargs = self._model_kwargs(model_name, window_size, swin_size)
        self.body = timm.create_model(model_name, features_only=True, drop_path_rate=drop_path_rate, **kwargs)
        for block in self.body.modules():
            if type(block) is SwinTransformerBlock:
                block.__class__ = _PadThenShiftSwinBlock  # same parameters, official padding order
        if res5_multi_grid:
            _dilate_res5(self.body, model_name, res5_multi_grid)
        if kwargs.get("dynamic_img_size"):
            # Swin: as the official PatchEmbed, pad H and W bottom/right to the patch size (timm refuses such sizes)
            self.body.patch_embed.dynamic_img_pad = True
        if pretrained:
            logger.info(load_timm_weights(self.body, model_name, pretrained, kwargs).summary())
        strides = self.body.feature_info.reduction()
        names = [_feature_name(s) for s in strides]
        missing = [f for f in out_features if f not in names]
        if missing:
            raise ValueError(f"{model_name} has no feature {missing}; it offers {names}")
        self._outputs: List[Tuple[int, str]] = [(names.index(f), f) for f in out_features]
        channels = self.body.feature_info.channels()
        self._shapes = {name: ShapeSpec(channels[i], strides[i]) for i, name in self._outputs}
        self._channels_last_output = str(getattr(self.body, "output_fmt", "NCHW")).endswith("NHWC")
        # Transformer stages end without a norm; the segmentation Swin normalises each output it hands to a head.
        self.out_norms = nn.ModuleDict(
            {name: nn.LayerNorm(self._shapes[name].channels) for _, name in self._outputs}
            if self._channels_last_output
            else {}
        )
        if norm == "FrozenBN":
            self.body = freeze_batch_norm_2d(self.body)
        elif norm != "BN":
            raise ValueError(f"MODEL.BACKBONE.NORM must be BN or FrozenBN, got {norm!r}")
        self._freeze(freeze_at, dict(zip(names, self.body.feature_info.module_name())))

    @staticmethod
    def _model_kwargs(model_name: str, window_size: int, swin_size: Sequence[Any] = ()) -> Dict[str, Any]:
        """Architecture arguments beyond timm's defaults; the same ones rebuild the model for weight loading.

        ``swin_size`` (embed_dim, depths, num_heads) replaces a Swin's size, for small models trained from scratch.
        """
        try:
            family = model_entrypoint(model_name).__module__
        except (KeyError, RuntimeError) as e:
            raise ValueError(
                f"MODEL.BACKBONE.TIMM_NAME={model_name!r} is not a timm model; see timm.list_models()"
            ) from e
        if family != _SWIN_MODULE:
            if window_size or swin_size:
                raise ValueError(
                    f"MODEL.BACKBONE.WINDOW_SIZE and SWIN_SIZE apply to Swin only; unset them for {model_name}"
                )
            return {}
        kwargs: Dict[str, Any] = {"dynamic_img_size": True, "always_partition": True}
        if window_size:
            kwargs["window_size"] = window_size
        if swin_size:
            embed_dim, depths, num_heads = swin_size
            kwargs.update(embed_dim=int(embed_dim), depths=tuple(depths), num_heads=tuple(num_heads))
        return kwargs

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        b = cfg.MODEL.BACKBONE
        return {
            "model_name": b.TIMM_NAME,
            "out_features": b.OUT_FEATURES,
            "pretrained": b.PRETRAINED,
            "freeze_at": b.FREEZE_AT,
            "norm": b.NORM,
            "drop_path_rate": b.DROP_PATH_RATE,
            "window_size": b.WINDOW_SIZE,
            "swin_size": b.SWIN_SIZE,
            "res5_multi_grid": b.RES5_MULTI_GRID,
        }

    def _freeze(self, freeze_at: int, module_of: Dict[str, str]) -> None:
        """Freeze the stem (``freeze_at`` 1) and the stages up to ``res{freeze_at}`` (2 = stem + res2, ...).

        The stem is ResNet's conv1/bn1 (its ``res1`` output) or Swin's patch embedding. For Swin, 2 freezes the
        patch embedding and the first stage, i.e. official ``frozen_stages=1`` except that timm places each
        patch-merging layer at the start of the next stage, so it stays trainable with that stage.
        """
        if freeze_at <= 0:
            return
        children = [name for name, _ in self.body.named_children()]
        position = {name: children.index(module.replace(".", "_")) for name, module in module_of.items()}
        if f"res{freeze_at}" in position:
            end = position[f"res{freeze_at}"] + 1
        elif freeze_at == 1:  # a stem with no output of its own: everything before the first stage
            end = min(position.values())
        else:
            end = len(children)
        for name in children[:end]:
            child = getattr(self.body, name)
            child.requires_grad_(False)
            setattr(self.body, name, freeze_batch_norm_2d(child))

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return dict(self._shapes)

    def forward(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``images`` (N, 3, H, W) -> ``{name: (N, C, ceil(H / stride), ceil(W / stride))}`` (Swin: any H, W)."""
        features = self.body(images)
        out = {}
        for i, name in self._outputs:
            f = features[i]
            if self._channels_last_output:
                f = self.out_norms[name](f).permute(0, 3, 1, 2)
            out[name] = f
        return out
