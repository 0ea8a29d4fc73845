"""How the model parts reach their registries: a leaf registry module, registration at import, and lookups by name
that need no loading step."""

import ast
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from freemask.config import ConfigError, get_cfg
from freemask.modeling import build_backbone
from freemask.modeling.backbone.base import Backbone, ShapeSpec
from freemask.modeling.registry import BACKBONE_REGISTRY

MODELING = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "freemask",
                        "modeling")  # fmt: skip


def _fresh(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def test_the_registry_module_imports_nothing_of_freemask():
    """A leaf: any part may import it without importing the builders or another part."""
    with open(os.path.join(MODELING, "registry.py"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    imported = [
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    ]
    relative = [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level]
    assert relative == [] and [name for name in imported if name.startswith("freemask")] == []
    assert "fvcore.common.registry" in imported


REGISTRIES = ("META_ARCH", "BACKBONE", "SEM_SEG_HEADS", "PIXEL_DECODER", "TRANSFORMER_DECODER")
PRINT_REGISTRIES = (
    "from freemask.modeling import registry\n"
    f"print({{name: sorted(n for n, _ in getattr(registry, name + '_REGISTRY')) for name in {REGISTRIES}}})"
)


def _registered_after(code: str) -> dict:
    return ast.literal_eval(_fresh(code + "\n" + PRINT_REGISTRIES).strip())


def test_every_built_in_is_registered_once_the_builders_are_imported():
    """No loading step between import and lookup: after ``import freemask.modeling.build`` alone, the registries read
    straight from ``registry.py`` hold every part that importing each module of the package one by one registers."""
    every_module = (
        "import importlib, pkgutil, freemask.modeling as package\n"
        "for info in pkgutil.walk_packages(package.__path__, 'freemask.modeling.'):\n"
        "    importlib.import_module(info.name)"
    )
    everything = _registered_after(every_module)
    assert all(everything[name] for name in REGISTRIES) and "ViTBackbone" in everything["BACKBONE"]
    assert _registered_after("import freemask.modeling.build") == everything


class _RecipeBackbone(Backbone):
    """A user's backbone, as the extending recipe writes it: registered with the decorator, built by name."""

    def __init__(self, *, channels: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, channels, 4, stride=4)
        self._channels = channels

    @classmethod
    def from_config(cls, cfg):
        return {"channels": 8}

    def forward(self, x: torch.Tensor):
        return {"res2": self.proj(x)}

    def output_shape(self):
        return {"res2": ShapeSpec(channels=self._channels, stride=4)}


def test_a_part_registered_outside_the_package_is_built_by_name_and_listed_when_misspelled():
    BACKBONE_REGISTRY.register(_RecipeBackbone)
    try:
        cfg = get_cfg()
        cfg.MODEL.BACKBONE.NAME = "_RecipeBackbone"
        backbone = build_backbone(cfg)
        assert isinstance(backbone, _RecipeBackbone) and backbone(torch.zeros(1, 3, 16, 16))["res2"].shape[1] == 8
        cfg.MODEL.BACKBONE.NAME = "_RecipeBackbon"
        with pytest.raises(ConfigError) as error:
            build_backbone(cfg)
        message = str(error.value)
        assert "\n" not in message and message.startswith("MODEL.BACKBONE.NAME '_RecipeBackbon' is not registered")
        assert "_RecipeBackbone" in message and "ViTBackbone" in message
    finally:
        BACKBONE_REGISTRY._obj_map.pop("_RecipeBackbone")
