"""Small building blocks shared by heads."""

from torch import nn


def get_norm(norm: str, channels: int) -> nn.Module:
    """``"GN"`` (32 groups), ``"BN"``, ``"SyncBN"`` or ``""`` (identity) for ``channels`` features."""
    if norm == "GN":
        return nn.GroupNorm(32, channels)
    if norm == "BN":
        return nn.BatchNorm2d(channels)
    if norm == "SyncBN":
        return nn.SyncBatchNorm(channels)
    if norm == "":
        return nn.Identity()
    raise ValueError(f"unknown norm {norm!r}; use GN, BN, SyncBN or an empty string")


def conv_norm_act(
    in_channels: int, out_channels: int, kernel_size: int, norm: str, activation: bool = True
) -> nn.Sequential:
    """Conv (no bias when normalised) -> norm -> ReLU, with 'same' padding."""
    layers = [
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=not norm),
        get_norm(norm, out_channels),
    ]
    if activation:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)
