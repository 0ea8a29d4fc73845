"""Per-parameter learning rate and weight decay, following the Mask2Former / MMSegmentation recipes.

Norm layers and embeddings get their own weight decay (0 in the FreeMask recipes) because decaying a norm's scale or a
learned query toward zero is not regularisation, it is damage; the backbone trains at a lower rate because it starts
from ImageNet weights.
"""

from typing import Dict, List, Sequence, Set, Tuple

import torch
from torch import nn

_NORM_TYPES = (
    nn.modules.batchnorm._BatchNorm,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
    nn.modules.instancenorm._InstanceNorm,
)
# Parameter-name fragments of position tables and learned queries (Swin, ViT, Mask2Former).
EMBEDDING_KEYWORDS = (
    "pos_embed",
    "absolute_pos_embed",
    "relative_position_bias_table",
    "query_embed",
    "query_feat",
    "level_embed",
    "cls_token",
)


def _norm_and_embedding_params(model: nn.Module) -> Tuple[Set[str], Set[str]]:
    norm, embed = set(), set()
    for module_name, module in model.named_modules():
        for param_name, _ in module.named_parameters(recurse=False):
            full = f"{module_name}.{param_name}" if module_name else param_name
            if isinstance(module, _NORM_TYPES) or type(module).__name__.startswith("FrozenBatchNorm"):
                norm.add(full)
            elif isinstance(module, nn.Embedding) or any(k in full for k in EMBEDDING_KEYWORDS):
                embed.add(full)
    return norm, embed


def build_param_groups(
    model: nn.Module,
    *,
    base_lr: float,
    weight_decay: float,
    weight_decay_norm: float,
    weight_decay_embed: float,
    backbone_multiplier: float = 1.0,
    custom_multipliers: Sequence[Sequence] = (),
) -> List[Dict]:
    """One optimizer group per trainable parameter, each with its ``lr`` and ``weight_decay``.

    ``custom_multipliers`` holds ``(name_substring, lr_multiplier, decay_multiplier)`` entries; the first entry whose
    substring occurs in a parameter's name applies instead of ``backbone_multiplier``. Groups with equal settings
    are merged so the optimizer state stays small.
    """
    norm, embed = _norm_and_embedding_params(model)
    merged: Dict[Tuple[float, float], List[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decay = weight_decay_norm if name in norm else weight_decay_embed if name in embed else weight_decay
        lr = base_lr * (backbone_multiplier if name.startswith("backbone.") else 1.0)
        for key, lr_mult, decay_mult in custom_multipliers:
            if key in name:
                lr, decay = base_lr * lr_mult, decay * decay_mult
                break
        merged.setdefault((lr, decay), []).append(param)
    return [{"params": params, "lr": lr, "weight_decay": decay} for (lr, decay), params in merged.items()]
