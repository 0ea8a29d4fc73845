import pytest
import torch

from freemask.modeling.clip import TINY_CLIP_NAME, build_clip


@pytest.fixture
def tiny_clip():
    """A fresh tiny random CLIP (0.1 s once open_clip is imported), the same weights in every test."""
    torch.manual_seed(0)
    return build_clip(TINY_CLIP_NAME)
