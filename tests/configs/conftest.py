"""The config tests' shared helpers (``config_families.py``, imported here only) as fixtures, so that no test module
imports another module of the tests."""

from typing import Callable

import config_families
import pytest

from freemask.config import CfgNode


@pytest.fixture
def load_config() -> Callable[[str], CfgNode]:
    """``load_config(path)``: the default config merged with one file."""
    return config_families.load


@pytest.fixture
def recipes() -> Callable[..., dict]:
    """``recipes(repo_root, dataset, family, prefix)``: {recipe: config} of one family's four FreeMask recipes."""
    return config_families.recipes


@pytest.fixture
def check_freemask_recipes() -> Callable[..., None]:
    return config_families.check_freemask_recipes


@pytest.fixture
def forward_groups() -> Callable[..., list]:
    """``forward_groups(repo_root, family)``: config paths grouped by what their forward computes."""
    return config_families.forward_groups


@pytest.fixture
def predict_512() -> Callable[[str], tuple]:
    """``predict_512(path)``: (config, class scores) of the config's randomly initialised model on a 512x512 image."""
    return config_families.predict_512
