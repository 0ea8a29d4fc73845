"""Helpers several modeling tests share, as fixtures (the helper modules here are imported by this file only, so no
test module imports another module of the tests). The one exception is msda_cuda_cases.py, imported by the two
compiled-op test modules: their decorators need its skip markers and kernel list at import time."""

import pathlib
from typing import Callable, Tuple

import deform_attn_inputs as deform_attn_inputs_module
import freeseg_reference as freeseg_reference_module
import mask_former_tiny
import open_vocab_tiny
import pixel_decoder_tiny
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
def tiny_pixel_decoder():
    """The tiny pixel decoder's helpers: ``.SHAPES`` (its input features), ``.build(**kwargs)`` (seeded decoder),
    ``.features(n, h, w, seed=0)`` (random inputs for it)."""
    return pixel_decoder_tiny


@pytest.fixture
def freeseg_reference():
    """FreeSeg's panoptic / instance rules step by step (freeseg_reference.py): ``.panoptic``, ``.instances``,
    ``.semantic_map``, ``.pil_nearest``."""
    return freeseg_reference_module


@pytest.fixture
def mask_former_tiny_cfg(repo_root) -> Callable[[], CfgNode]:
    """``mask_former_tiny_cfg()``: a fresh toy Mask2Former config on the CPU with 4 classes and 256 points."""
    return lambda: mask_former_tiny.tiny_cfg(repo_root)


@pytest.fixture
def striped_batch() -> Callable:
    """``striped_batch(n=2, size=64)``: images whose 4 vertical stripes' colour says the class."""
    return mask_former_tiny.striped_batch


class OpenVocabTiny:
    """The tiny OpenVocabulary of open_vocab_tiny.py for one test: its config, model, samples, splits and record."""

    test_split: str = open_vocab_tiny.TEST
    test_names: Tuple[str, ...] = open_vocab_tiny.TEST_NAMES

    def __init__(self, repo_root: pathlib.Path):
        self._repo_root = repo_root

    def cfg(self, *opts) -> CfgNode:
        """The toy Mask2Former config made an OpenVocabulary over the tiny splits, then ``opts`` (KEY, VALUE, ...)."""
        return open_vocab_tiny.tiny_cfg(self._repo_root, *opts)

    model = staticmethod(open_vocab_tiny.tiny_model)  # the model of a config, seeded
    sample = staticmethod(open_vocab_tiny.random_sample)  # a mapper-like training dict
    record = staticmethod(open_vocab_tiny.write_all_task_record)  # an all-task record written to a folder
    register = staticmethod(open_vocab_tiny.register)  # an open-vocabulary split registered once


@pytest.fixture
def open_vocab(repo_root) -> OpenVocabTiny:
    return OpenVocabTiny(repo_root)
