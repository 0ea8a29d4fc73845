"""Mix Transformer (MiT) B0..B5, the SegFormer encoder (Xie et al., NeurIPS 2021).

Four stages at strides 4, 8, 16, 32. Each stage starts with an *overlapping* patch embedding, a strided conv whose
kernel is larger than its stride (7x7 stride 4, then 3x3 stride 2), so neighbouring patches share pixels and no
position table is needed: any test size works without interpolating one. Its blocks use *efficient* self-attention,
where keys and values come from the feature map shrunk by a sequence-reduction ratio R (8, 4, 2, 1; an RxR conv of
stride R), so attention at stride 4 costs N^2 / R^2 instead of N^2. Their feed-forward layer (Mix-FFN) has a 3x3
depth-wise conv between its two linear layers, which gives the tokens positional information through its zero
padding. Each stage ends with a LayerNorm.

Module names follow the official release inside a stage (``attn.q``, ``attn.kv``, ``attn.proj``, ``attn.sr``,
``attn.norm``, ``mlp.fc1``, ``mlp.dwconv``, ``mlp.fc2``), with the release's per-stage attributes (``patch_embed1``,
``block1``, ``norm1``) gathered under ``stages.{i}``, so official ImageNet files load through a three-entry table
(:data:`OFFICIAL_STAGE_PARTS`) and MMSegmentation checkpoints map just as directly (``layers.{i}.0`` is the patch
embedding, ``layers.{i}.1.{j}`` block ``j``, ``layers.{i}.2`` the stage norm).
"""

import logging
import math
import re
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn

from ...config import CfgNode, ConfigError
from ..registry import BACKBONE_REGISTRY
from .base import Backbone, ShapeSpec
from .weights import LoadReport, WeightFileError, check_local_file, read_state_dict

logger = logging.getLogger(__name__)

# Every LayerNorm of the official models and of MMSegmentation's uses eps 1e-6 (the official patch-embedding and
# reduction norms keep PyTorch's 1e-5; the difference is far below what training notices).
_LN_EPS = 1e-6
_PATCH_KERNELS = (7, 3, 3, 3)
_PATCH_STRIDES = (4, 2, 2, 2)


@dataclass(frozen=True)
class SegFormerSpec:
    """One SegFormer size: encoder widths and depths per stage, and the decoder width the paper pairs with it."""

    widths: Tuple[int, int, int, int]
    depths: Tuple[int, int, int, int]
    decoder_dim: int


# SegFormer paper, section 3.3 and appendix table 6; official mix_transformer.py (mit_b0..mit_b5). Heads (1, 2, 5, 8),
# reduction ratios (8, 4, 2, 1) and MLP ratio 4 are shared by every size.
SEGFORMER_VARIANTS: Dict[str, SegFormerSpec] = {
    "b0": SegFormerSpec((32, 64, 160, 256), (2, 2, 2, 2), 256),
    "b1": SegFormerSpec((64, 128, 320, 512), (2, 2, 2, 2), 256),
    "b2": SegFormerSpec((64, 128, 320, 512), (3, 4, 6, 3), 768),
    "b3": SegFormerSpec((64, 128, 320, 512), (3, 4, 18, 3), 768),
    "b4": SegFormerSpec((64, 128, 320, 512), (3, 8, 27, 3), 768),
    "b5": SegFormerSpec((64, 128, 320, 512), (3, 6, 40, 3), 768),
}


def segformer_spec(variant: str) -> SegFormerSpec:
    """The spec of ``MODEL.BACKBONE.MIT.VARIANT``, or a config error listing the valid names."""
    try:
        return SEGFORMER_VARIANTS[variant.lower()]
    except KeyError:
        raise ConfigError(
            f"MODEL.BACKBONE.MIT.VARIANT {variant!r} is not an MiT size; use one of {', '.join(SEGFORMER_VARIANTS)}"
        ) from None


def _tokens_to_map(x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """``(B, H*W, C)`` -> ``(B, C, H, W)`` without a copy: a view that is channels-last in memory, which convs take
    as it is and return in the same layout, so :func:`_map_to_tokens` is free too."""
    return x.unflatten(1, size).permute(0, 3, 1, 2)


def _map_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, H*W, C)`` (a view for channels-last maps)."""
    return x.permute(0, 2, 3, 1).flatten(1, 2)


class OverlapPatchEmbed(nn.Module):
    """Strided conv with a kernel wider than its stride (padding kernel // 2), then LayerNorm over channels."""

    def __init__(self, in_channels: int, dim: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size, stride=stride, padding=kernel_size // 2)
        self.norm = nn.LayerNorm(dim, eps=_LN_EPS)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """``(B, C, H, W)`` -> tokens ``(B, h*w, dim)`` and ``(h, w) = ceil((H, W) / stride)``."""
        x = self.proj(x)
        size = (x.shape[-2], x.shape[-1])
        return self.norm(_map_to_tokens(x)), size


class EfficientSelfAttention(nn.Module):
    """Multi-head self-attention whose keys and values come from the map shrunk ``sr_ratio`` times per side."""

    def __init__(self, dim: int, num_heads: int, sr_ratio: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(dim, eps=_LN_EPS)

    def forward(self, x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
        """``x`` ``(B, N, C)`` with ``N = H * W`` for ``size = (H, W)`` -> ``(B, N, C)``."""
        batch, length, dim = x.shape
        head_dim = dim // self.num_heads
        q = self.q(x).view(batch, length, self.num_heads, head_dim).transpose(1, 2)
        source = x
        if self.sr_ratio > 1:
            source = self.norm(_map_to_tokens(self.sr(_tokens_to_map(x, size))))
        k, v = self.kv(source).view(batch, -1, 2, self.num_heads, head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, head_dim), scale head_dim ** -0.5
        return self.proj(out.transpose(1, 2).reshape(batch, length, dim))


class MixFFN(nn.Module):
    """Linear -> 3x3 depth-wise conv on the token map -> GELU -> linear."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.dwconv = nn.Conv2d(hidden_dim, hidden_dim, 3, padding=1, groups=hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
        x = _map_to_tokens(self.dwconv(_tokens_to_map(self.fc1(x), size)))
        return self.fc2(self.act(x))


class MiTBlock(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``, each branch drop-pathed."""

    def __init__(self, dim: int, num_heads: int, sr_ratio: int, mlp_ratio: int, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=_LN_EPS)
        self.attn = EfficientSelfAttention(dim, num_heads, sr_ratio)
        self.norm2 = nn.LayerNorm(dim, eps=_LN_EPS)
        self.mlp = MixFFN(dim, dim * mlp_ratio)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), size))
        return x + self.drop_path(self.mlp(self.norm2(x), size))


class MiTStage(nn.Module):
    """Patch embedding, blocks, LayerNorm; maps ``(B, C_in, H, W)`` to ``(B, dim, H / stride, W / stride)``."""

    def __init__(self, patch_embed: OverlapPatchEmbed, blocks: Sequence[MiTBlock], dim: int) -> None:
        super().__init__()
        self.patch_embed = patch_embed
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(dim, eps=_LN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, size = self.patch_embed(x)
        for block in self.blocks:
            x = block(x, size)
        return _tokens_to_map(self.norm(x), size)


@BACKBONE_REGISTRY.register()
class MixTransformer(Backbone):
    """MiT encoder with outputs ``res2``..``res5`` (strides 4..32, channels ``widths``).

    Drop-path grows linearly from 0 to ``drop_path_rate`` over all blocks (0.1 published). Only the stages up to the
    last requested output are built, so every parameter receives a gradient. ``pretrained`` is a local official
    ``mit_b*.pth`` ImageNet file (nothing is downloaded); what loaded and what did not is logged.
    Inputs of any size of at least 32 pixels work; outputs have ``ceil(size / stride)`` pixels per side.
    """

    def __init__(
        self,
        *,
        widths: Sequence[int],
        depths: Sequence[int],
        num_heads: Sequence[int] = (1, 2, 5, 8),
        sr_ratios: Sequence[int] = (8, 4, 2, 1),
        mlp_ratio: int = 4,
        drop_path_rate: float = 0.1,
        out_features: Sequence[str] = ("res2", "res3", "res4", "res5"),
        pretrained: str = "",
    ) -> None:
        super().__init__()
        if not len(widths) == len(depths) == len(num_heads) == len(sr_ratios) == len(_PATCH_KERNELS):
            raise ValueError("widths, depths, num_heads and sr_ratios need one entry per stage (4)")
        if pretrained:
            check_local_file(pretrained)
        names = [f"res{i + 2}" for i in range(len(widths))]
        unknown = [f for f in out_features if f not in names]
        if unknown or not out_features:
            raise ValueError(f"MixTransformer has no feature {unknown or '(none requested)'}; it offers {names}")
        num_stages = max(names.index(f) for f in out_features) + 1
        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        stages, in_channels, first = [], 3, 0
        for i in range(num_stages):
            patch_embed = OverlapPatchEmbed(in_channels, widths[i], _PATCH_KERNELS[i], _PATCH_STRIDES[i])
            blocks = [
                MiTBlock(widths[i], num_heads[i], sr_ratios[i], mlp_ratio, rates[first + j]) for j in range(depths[i])
            ]
            stages.append(MiTStage(patch_embed, blocks, widths[i]))
            in_channels, first = widths[i], first + depths[i]
        self.stages = nn.ModuleList(stages)
        self._out_features = [f for f in names if f in out_features]
        self._shapes = {
            name: ShapeSpec(widths[i], math.prod(_PATCH_STRIDES[: i + 1])) for i, name in enumerate(names[:num_stages])
        }
        self.apply(_init_weights)
        if pretrained:
            logger.info(load_official_mit_weights(self, pretrained).summary())

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        b = cfg.MODEL.BACKBONE
        if b.FREEZE_AT:
            raise ConfigError("MODEL.BACKBONE.FREEZE_AT must be 0 for MixTransformer (SegFormer trains every stage)")
        spec = segformer_spec(b.MIT.VARIANT)
        return {
            "widths": spec.widths,
            "depths": spec.depths,
            "drop_path_rate": b.DROP_PATH_RATE,
            "out_features": b.OUT_FEATURES,
            "pretrained": b.PRETRAINED,
        }

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {name: self._shapes[name] for name in self._out_features}

    def forward(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``images`` (N, 3, H, W) -> ``{res2: (N, C0, H/4, W/4), ..., res5: (N, C3, H/32, W/32)}`` (rounded up)."""
        out = {}
        x = images
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if f"res{i + 2}" in self._out_features:
                out[f"res{i + 2}"] = x.contiguous()  # stages pass channels-last views on; heads get plain NCHW
        return out


def _init_weights(module: nn.Module) -> None:
    """The official initialisation: linear weights truncated normal (std 0.02), convs He-normal on fan-out."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
        nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
        nn.init.zeros_(module.bias)


# Official per-stage attribute (numbered 1..4) -> the part of ``stages.{i}`` holding it. Inside a part the names are
# the official ones, except that the official Mix-FFN wraps its depth-wise conv once more (``dwconv.dwconv``).
OFFICIAL_STAGE_PARTS = {"patch_embed": "patch_embed", "block": "blocks", "norm": "norm"}
_OFFICIAL_KEY = re.compile(r"^(patch_embed|block|norm)([1-9])\.(.+)$")


def official_mit_key(key: str) -> Optional[str]:
    """Our name for a tensor of an official ``mit_b*.pth`` file (``block2.0.attn.q.weight`` ->
    ``stages.1.blocks.0.attn.q.weight``), or None for tensors the encoder has no place for (the ImageNet ``head``)."""
    match = _OFFICIAL_KEY.match(key)
    if match is None:
        return None
    part, stage, rest = match.groups()
    return f"stages.{int(stage) - 1}.{OFFICIAL_STAGE_PARTS[part]}.{rest.replace('mlp.dwconv.dwconv.', 'mlp.dwconv.')}"


def load_official_mit_weights(model: MixTransformer, path: str) -> LoadReport:
    """Load an official ImageNet ``mit_b*.pth`` file into ``model``; returns what loaded, with keys in file naming.

    Tensors of another shape (a file of another size) are reported and skipped. A file in which nothing matches is an
    error rather than a silent start from scratch.
    """
    state = read_state_dict(path)
    target = model.state_dict()
    report = LoadReport(path=path, loaded=0)
    loadable: Dict[str, torch.Tensor] = {}
    for key, value in state.items():
        dest = official_mit_key(key)
        if dest is None or dest not in target:
            report.unexpected.append(key)
        elif value.shape != target[dest].shape:
            report.mismatched.append((key, tuple(value.shape), tuple(target[dest].shape)))
        else:
            loadable[dest] = value
    if not loadable:
        if report.mismatched:
            key, found, expected = report.mismatched[0]
            problem = f"it is for another MiT size ({key}: {found} in the file, {expected} in the model)"
        elif any(k.startswith(("layers.", "backbone.")) for k in state):
            problem = "it has the MMSegmentation layout"
        else:
            problem = "none of its keys is an MiT key"
        raise WeightFileError(
            f"{path}: no tensor fits MixTransformer, {problem}. Pass the official NVlabs mit_b*.pth ImageNet file "
            "(keys patch_embed1.*, block1.*, norm1.*) of the size set by MODEL.BACKBONE.MIT.VARIANT"
        )
    model.load_state_dict(loadable, strict=False)
    report.loaded = len(loadable)
    report.missing = sorted(k for k in target if k not in loadable)
    return report
