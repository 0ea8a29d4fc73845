"""The SeMask-FPN configs: the published recipe per dataset and size (Picsart-AI-Research/SeMask-Segmentation,
SeMask-FPN/configs/semask_swin/<dataset>/*.py and README.md), and every config building its model (on the meta device:
sizes only)."""

import glob

import cv2
import numpy as np
import pytest
import torch
from timm.models.swin_transformer import SwinTransformerBlock

from freemask.data.mappers.semantic import SemSegDatasetMapper
from freemask.modeling import build_model
from freemask.modeling.inference import sliding_windows

SIZES = {  # size: (timm name, ImageNet weights)
    "tiny": ("swin_tiny_patch4_window7_224", "pretrained/swin_tiny_patch4_window7_224.pth"),
    "small": ("swin_small_patch4_window7_224", "pretrained/swin_small_patch4_window7_224.pth"),
    "base": ("swin_base_patch4_window12_384", "pretrained/swin_base_patch4_window12_384_22k.pth"),
    "large": ("swin_large_patch4_window12_384", "pretrained/swin_large_patch4_window12_384_22k.pth"),
}
DATASETS = {  # folder: (classes, batch, lr, weight decay, warm-up factor, crop of T/S/B, crop of L, file pattern)
    "ade20k/semantic-segmentation": (150, 16, 1e-4, 1e-4, 1e-6, 512, 640, "semask_fpn_swin_{}_bs16_80k{}.yaml"),
    "cityscapes/semantic-segmentation": (19, 8, 1e-3, 0.05, 1e-5, 768, 768, "semask_fpn_swin_{}_bs8_80k{}.yaml"),
    "coco-stuff-10k/semantic-segmentation": (171, 16, 1e-4, 1e-4, 1e-6, 512, 640, "semask_fpn_swin_{}_bs16_80k{}.yaml"),
}


def config_path(repo_root, dataset, size):
    pattern = DATASETS[dataset][-1]
    suffix = "_res640" if size == "large" and dataset != "cityscapes/semantic-segmentation" else ""
    return str(repo_root / "configs" / dataset / "semask" / pattern.format(size, suffix))


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("size", SIZES)
def test_published_recipe(repo_root, dataset, size, load_config):
    classes, batch, lr, decay, warmup_factor, crop, large_crop, _ = DATASETS[dataset]
    cfg = load_config(config_path(repo_root, dataset, size))
    m, s, t = cfg.MODEL, cfg.SOLVER, cfg.TEST
    assert (m.META_ARCHITECTURE, m.BACKBONE.NAME, m.SEM_SEG_HEAD.NAME) == ("SeMaskFPN", "SeMaskSwin", "SeMaskFPNHead")
    assert (m.BACKBONE.TIMM_NAME, m.BACKBONE.PRETRAINED) == SIZES[size] and m.BACKBONE.DROP_PATH_RATE == 0.3
    assert m.SEM_SEG_HEAD.NUM_CLASSES == classes and m.SEMASK.PRIOR_LOSS_WEIGHT == 0.4
    assert (m.SEM_SEG_HEAD.CONVS_DIM, m.SEM_SEG_HEAD.DROPOUT, m.SEM_SEG_HEAD.LOSS_AVG_NON_IGNORE) == (256, 0.1, False)
    ohem = size == "large" and dataset != "cityscapes/semantic-segmentation"
    assert m.SEMASK.OHEM_MIN_KEPT == (100000 if ohem else 0) and m.BACKBONE.SEMASK.RESIDUAL == "normed"
    assert (s.OPTIMIZER, s.BASE_LR, s.WEIGHT_DECAY, s.WEIGHT_DECAY_NORM, s.WEIGHT_DECAY_EMBED) == (
        "ADAMW", lr, decay, 0.0, 0.0
    )  # fmt: skip
    assert (s.LR_SCHEDULER_NAME, s.POLY_LR_POWER, s.WARMUP_ITERS, s.WARMUP_FACTOR) == (
        "WarmupPolyLR", 1.0, 1500, warmup_factor
    )  # fmt: skip
    assert (s.MAX_ITER, s.IMS_PER_BATCH, s.BACKBONE_MULTIPLIER) == (80000, batch, 1.0)
    expected_crop = large_crop if size == "large" else crop
    assert list(cfg.INPUT.CROP.SIZE) == [expected_crop] * 2
    # training batches padded to the crop (the release's Pad(size=crop_size)); test images not padded at all
    assert (cfg.INPUT.SIZE_DIVISIBILITY, cfg.TEST.SIZE_DIVISIBILITY) == (expected_crop, 0)
    if dataset == "cityscapes/semantic-segmentation":
        assert (list(cfg.INPUT.MIN_SIZE_TRAIN), cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING) == ([512, 2048], "range")
        assert t.SLIDING_WINDOW.ENABLED and list(t.SLIDING_WINDOW.CROP_SIZE) == [768, 768]
        assert cfg.INPUT.MIN_SIZE_TEST == 1024
    else:
        ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
        assert list(cfg.INPUT.MIN_SIZE_TRAIN) == [int(expected_crop * r) for r in ratios]
        assert not t.SLIDING_WINDOW.ENABLED and cfg.INPUT.MIN_SIZE_TEST == expected_crop
    assert list(t.AUG.RATIOS) == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75] and t.AUG.FLIP and not t.AUG.ENABLED


def test_every_semask_config_builds(repo_root, load_config):
    paths = sorted(glob.glob(str(repo_root / "configs" / "*" / "*" / "semask" / "semask_fpn_*.yaml")))
    assert len(paths) == len(DATASETS) * len(SIZES)
    for path in paths:
        cfg = load_config(path)
        cfg.merge_from_list(["MODEL.BACKBONE.PRETRAINED", "", "MODEL.DEVICE", "meta"])
        with torch.device("meta"):
            model = build_model(cfg)
        assert model.sem_seg_head.conv_seg.out_channels == cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES, path
        assert model.backbone.semantic_layers[0].attn.mlp_cls_q.out_features == cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES


# What the release's SeMask Swin-T does with a test image (SeMask-FPN, MMSegmentation 0.x): resize keeping the ratio
# to shortest edge 512 (longest <= 2048), no Pad step; tokens ceil(side / 4) after padding to the patch size, then
# (side + 1) // 2 per merge; each Swin block pads a stage to a multiple of 7 and cuts it into 7x7 windows; the
# semantic layers of stages 1-2 use 7x7 windows, those of stages 3-4 attend over the whole stage (150 classes).
RELEASE_LAYOUT = {  # image (h, w): (network input, [per stage: (tokens h, w), (Swin windows, tokens per window),
    # (semantic-attention groups, tokens per group)])
    (512, 683): ((512, 683), [((128, 171), (19 * 25, 49), (19 * 25, 49)), ((64, 86), (10 * 13, 49), (10 * 13, 49)),
                              ((32, 43), (5 * 7, 49), (1, 32 * 43)), ((16, 22), (3 * 4, 49), (1, 16 * 22))]),
    (256, 320): ((512, 640), [((128, 160), (19 * 23, 49), (19 * 23, 49)), ((64, 80), (10 * 12, 49), (10 * 12, 49)),
                              ((32, 40), (5 * 6, 49), (1, 32 * 40)), ((16, 20), (3 * 3, 49), (1, 16 * 20))]),
}  # fmt: skip


@pytest.mark.parametrize("image_size", RELEASE_LAYOUT)
def test_ade20k_test_image_reaches_the_network_at_the_release_size_and_windows(
    repo_root, tmp_path, image_size, load_config
):
    cfg = load_config(config_path(repo_root, "ade20k/semantic-segmentation", "tiny"))
    cfg.merge_from_list(["MODEL.BACKBONE.PRETRAINED", "", "MODEL.DEVICE", "meta"])
    h, w = image_size
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((h, w, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "a_mask.png"), np.zeros((h, w), np.uint8))
    record = {"file_name": str(tmp_path / "a.png"), "sem_seg_file_name": str(tmp_path / "a_mask.png")}
    sample = SemSegDatasetMapper.from_config(cfg, is_train=False)(record)
    with torch.device("meta"):
        model = build_model(cfg).eval()
    swin_attn = [m.attn for m in model.backbone.body.modules() if isinstance(m, SwinTransformerBlock)]
    semantic_attn = [layer.attn for layer in model.backbone.semantic_layers]
    seen = {"windows": [], "groups": []}
    for key, modules in (("windows", swin_attn), ("groups", semantic_attn)):
        for module in modules:
            module.register_forward_hook(lambda m, args, out, key=key: seen[key].append(tuple(args[0].shape[:2])))

    def recording_predict(images):  # the real backbone on the meta device (shapes only), then zero logits
        seen["input"] = tuple(images.shape[-2:])
        seen["tokens"] = [tuple(f.shape[-2:]) for f in model.backbone(images).values()]
        return images.new_zeros((images.shape[0], 150, *images.shape[-2:]))

    model.predict_logits = recording_predict
    with torch.no_grad():
        (out,) = model([sample])
    network_input, stages = RELEASE_LAYOUT[image_size]
    assert out["sem_seg"].shape == (150, h, w) and seen["input"] == network_input
    assert seen["tokens"] == [tokens for tokens, _, _ in stages]
    depths = (2, 2, 6, 2)
    assert seen["windows"] == [windows for (_, windows, _), depth in zip(stages, depths) for _ in range(depth)]
    assert seen["groups"] == [groups for _, _, groups in stages]


def test_cityscapes_windows_need_no_padding(repo_root, load_config):
    """1024x2048 images in 768x768 windows at stride 512: 2 x 4 windows, all 768x768 (multiples of 32, so the Swin
    pads nothing at the patch embedding or the merges; each stage pads only to its window)."""
    cfg = load_config(config_path(repo_root, "cityscapes/semantic-segmentation", "tiny"))
    window = cfg.TEST.SLIDING_WINDOW
    boxes = sliding_windows(1024, 2048, tuple(window.CROP_SIZE), tuple(window.STRIDE))
    assert [(y1, x1) for y1, x1, _, _ in boxes] == [(y, x) for y in (0, 256) for x in (0, 512, 1024, 1280)]
    assert {(y2 - y1, x2 - x1) for y1, x1, y2, x2 in boxes} == {(768, 768)} and cfg.TEST.SIZE_DIVISIBILITY == 0
