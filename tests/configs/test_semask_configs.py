"""The SeMask-FPN configs: the published recipe per dataset and size (SEMASK_FACTS.md and the release's configs),
and every config building its model (on the meta device: sizes only)."""

import glob

import pytest
import torch
from config_families import load

from freemask.modeling import build_model

SIZES = {  # size: (timm name, ImageNet weights)
    "tiny": ("swin_tiny_patch4_window7_224", "pretrained/swin_tiny_patch4_window7_224.pth"),
    "small": ("swin_small_patch4_window7_224", "pretrained/swin_small_patch4_window7_224.pth"),
    "base": ("swin_base_patch4_window12_384", "pretrained/swin_base_patch4_window12_384_22k.pth"),
    "large": ("swin_large_patch4_window12_384", "pretrained/swin_large_patch4_window12_384_22k.pth"),
}
DATASETS = {  # folder: (classes, batch, lr, weight decay, warm-up factor, crop of T/S/B, crop of L, file pattern)
    "ade20k-150": (150, 16, 1e-4, 1e-4, 1e-6, 512, 640, "semask_fpn_swin_{}_bs16_80k{}.yaml"),
    "cityscapes-19": (19, 8, 1e-3, 0.05, 1e-5, 768, 768, "semask_fpn_swin_{}_bs8_80k{}.yaml"),
    "coco-stuff-10k-171": (171, 16, 1e-4, 1e-4, 1e-6, 512, 640, "semask_fpn_swin_{}_bs16_80k{}.yaml"),
}


def config_path(repo_root, dataset, size):
    pattern = DATASETS[dataset][-1]
    suffix = "_res640" if size == "large" and dataset != "cityscapes-19" else ""
    return str(repo_root / "configs" / dataset / "semask" / pattern.format(size, suffix))


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("size", SIZES)
def test_published_recipe(repo_root, dataset, size):
    classes, batch, lr, decay, warmup_factor, crop, large_crop, _ = DATASETS[dataset]
    cfg = load(config_path(repo_root, dataset, size))
    m, s, t = cfg.MODEL, cfg.SOLVER, cfg.TEST
    assert (m.META_ARCHITECTURE, m.BACKBONE.NAME, m.SEM_SEG_HEAD.NAME) == ("SeMaskFPN", "SeMaskSwin", "SeMaskFPNHead")
    assert (m.BACKBONE.TIMM_NAME, m.BACKBONE.PRETRAINED) == SIZES[size] and m.BACKBONE.DROP_PATH_RATE == 0.3
    assert m.SEM_SEG_HEAD.NUM_CLASSES == classes and m.SEMASK.PRIOR_LOSS_WEIGHT == 0.4
    assert (m.SEM_SEG_HEAD.CONVS_DIM, m.SEM_SEG_HEAD.DROPOUT, m.SEM_SEG_HEAD.LOSS_AVG_NON_IGNORE) == (256, 0.1, False)
    ohem = size == "large" and dataset != "cityscapes-19"
    assert m.SEMASK.OHEM_MIN_KEPT == (100000 if ohem else 0) and m.SEMASK.RESIDUAL == "normed"
    assert (s.OPTIMIZER, s.BASE_LR, s.WEIGHT_DECAY, s.WEIGHT_DECAY_NORM, s.WEIGHT_DECAY_EMBED) == (
        "ADAMW", lr, decay, 0.0, 0.0
    )  # fmt: skip
    assert (s.LR_SCHEDULER_NAME, s.POLY_LR_POWER, s.WARMUP_ITERS, s.WARMUP_FACTOR) == (
        "WarmupPolyLR", 1.0, 1500, warmup_factor
    )  # fmt: skip
    assert (s.MAX_ITER, s.IMS_PER_BATCH, s.BACKBONE_MULTIPLIER) == (80000, batch, 1.0)
    expected_crop = large_crop if size == "large" else crop
    assert list(cfg.INPUT.CROP.SIZE) == [expected_crop] * 2 and cfg.INPUT.SIZE_DIVISIBILITY == 32
    if dataset == "cityscapes-19":
        assert (list(cfg.INPUT.MIN_SIZE_TRAIN), cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING) == ([512, 2048], "range")
        assert t.SLIDING_WINDOW.ENABLED and list(t.SLIDING_WINDOW.CROP_SIZE) == [768, 768]
        assert cfg.INPUT.MIN_SIZE_TEST == 1024
    else:
        ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
        assert list(cfg.INPUT.MIN_SIZE_TRAIN) == [int(expected_crop * r) for r in ratios]
        assert not t.SLIDING_WINDOW.ENABLED and cfg.INPUT.MIN_SIZE_TEST == expected_crop
    assert list(t.AUG.RATIOS) == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75] and t.AUG.FLIP and not t.AUG.ENABLED


def test_every_semask_config_builds(repo_root):
    paths = sorted(glob.glob(str(repo_root / "configs" / "*" / "semask" / "semask_fpn_*.yaml")))
    assert len(paths) == len(DATASETS) * len(SIZES)
    for path in paths:
        cfg = load(path)
        cfg.merge_from_list(["MODEL.BACKBONE.PRETRAINED", "", "MODEL.DEVICE", "meta"])
        with torch.device("meta"):
            model = build_model(cfg)
        assert model.sem_seg_head.conv_seg.out_channels == cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES, path
        assert model.backbone.semantic_layers[0].attn.mlp_cls_q.out_features == cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
