"""Backbones read only MODEL.BACKBONE.*; keys that must agree with the rest of the config are filled by the builder."""

import pytest
import torch

from freemask.config import CfgNode, ConfigError, get_cfg
from freemask.modeling import BACKBONE_REGISTRY, build_backbone, build_model
from freemask.modeling.build import fill_backbone_keys


@pytest.mark.parametrize("name", sorted(name for name, _ in BACKBONE_REGISTRY))
def test_from_config_reads_nothing_outside_model_backbone(name):
    """A tree holding MODEL.BACKBONE alone: a backbone reading any other key fails here with an AttributeError."""
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.NAME = name
    cfg.MODEL.BACKBONE.TIMM_NAME = "swin_tiny_patch4_window7_224" if name == "SeMaskSwin" else "resnet18"
    only_backbone = CfgNode({"MODEL": {"BACKBONE": fill_backbone_keys(cfg).MODEL.BACKBONE.clone()}})
    assert BACKBONE_REGISTRY.get(name).from_config(only_backbone)


def test_unset_keys_come_from_the_crop_and_the_head_and_the_config_is_left_alone():
    cfg = get_cfg()
    cfg.INPUT.CROP.SIZE = [96, 128]
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 7
    cfg.freeze()
    filled = fill_backbone_keys(cfg)
    assert list(filled.MODEL.BACKBONE.VIT.IMG_SIZE) == [96, 128] and filled.MODEL.BACKBONE.SEMASK.NUM_CLASSES == 7
    assert list(cfg.MODEL.BACKBONE.VIT.IMG_SIZE) == [] and cfg.MODEL.BACKBONE.SEMASK.NUM_CLASSES == 0
    cfg.defrost()
    cfg.MODEL.BACKBONE.VIT.IMG_SIZE = [32, 48]
    cfg.MODEL.BACKBONE.SEMASK.NUM_CLASSES = 3
    assert fill_backbone_keys(cfg) is cfg  # set keys decide for themselves


def _vit_cfg(repo_root, *overrides):
    cfg = get_cfg()
    cfg.merge_from_file(str(repo_root / "configs" / "toy" / "semantic-segmentation" / "segmenter_vit_tiny_toy.yaml"))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", *overrides])
    return cfg


def test_vit_position_table_follows_the_crop_unless_its_own_key_is_set(repo_root):
    crop = ["INPUT.CROP.SIZE", "[64, 96]"]
    with torch.device("meta"):
        by_crop = build_backbone(_vit_cfg(repo_root, *crop))
        own = build_backbone(_vit_cfg(repo_root, *crop, "MODEL.BACKBONE.VIT.IMG_SIZE", "[32, 16]"))
    assert tuple(by_crop.vit.patch_embed.grid_size) == (4, 6)
    assert tuple(own.vit.patch_embed.grid_size) == (2, 1) and own.vit.pos_embed.shape[1] == 1 + 2 * 1


def _semask_cfg(repo_root, *overrides):
    cfg = get_cfg()
    cfg.merge_from_file(str(repo_root / "configs" / "toy" / "semantic-segmentation" / "semask_swin_tiny_toy.yaml"))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "5", *overrides])
    return cfg


def test_semask_priors_have_the_head_classes_and_a_disagreement_is_refused(repo_root):
    model = build_model(_semask_cfg(repo_root))
    assert model.backbone.num_classes == 5 and model.backbone.semantic_layers[0].attn.mlp_cls_q.out_features == 5
    with pytest.raises(ConfigError, match="MODEL.BACKBONE.SEMASK.NUM_CLASSES 4 differs from .*NUM_CLASSES 5"):
        build_model(_semask_cfg(repo_root, "MODEL.BACKBONE.SEMASK.NUM_CLASSES", "4"))
