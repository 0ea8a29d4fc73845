"""Helpers several modeling tests share, as fixtures (the helper modules here are imported by this file only, so no
test module imports another module of the tests)."""

from typing import Callable

import deform_attn_inputs as deform_attn_inputs_module
import mask_former_tiny
import pytest
import swin_release_order

from freemask.config import CfgNode


@pytest.fixture
def swin_features() -> Callable:
    """``swin_features(backbone, images, semantic_layers=None)``: (features, priors) of our Swin / SeMask Swin modules
    run step by step in the order of the official release (see swin_release_order.py)."""
    return swin_release_order.swin_features


@pytest.fixture
def deform_attn_meta() -> Callable:
    """``deform_attn_meta(shapes)``: (spatial_shapes, level_start_index, total positions) of (H, W) levels."""
    return deform_attn_inputs_module.level_meta


@pytest.fixture
def deform_attn_inputs() -> Callable:
    """``deform_attn_inputs(shapes=..., n, lq, m, d, p, dtype, seed)``: value, spatial_shapes, level_start_index,
    sampling locations and attention weights, seeded, on the CPU."""
    return deform_attn_inputs_module.random_inputs


@pytest.fixture
def mask_former_tiny_cfg(repo_root) -> Callable[[], CfgNode]:
    """``mask_former_tiny_cfg()``: a fresh toy Mask2Former config on the CPU with 4 classes and 256 points."""
    return lambda: mask_former_tiny.tiny_cfg(repo_root)


@pytest.fixture
def striped_batch() -> Callable:
    """``striped_batch(n=2, size=64)``: images whose 4 vertical stripes' colour says the class."""
    return mask_former_tiny.striped_batch
