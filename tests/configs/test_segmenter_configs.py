"""The Segmenter configs of the FreeMask table: the published recipe, the FreeMask recipes relate to it as the paper
says, and every config builds and predicts a 512x512 image (see config_families.py for the grouping of forwards).
"""

import pytest

from freemask.modeling.inference import sliding_windows

DATASETS = {
    "ade20k/semantic-segmentation": {"classes": 150, "real_iter": 160000},
    "coco-stuff-164k/semantic-segmentation": {"classes": 171, "real_iter": 80000},
}
BACKBONES = {"vit_small": "vit_small_patch16_384", "vit_base": "vit_base_patch16_384"}
CASES = [(d, b) for d in DATASETS for b in BACKBONES]


@pytest.mark.parametrize("dataset,backbone", CASES)
def test_real_only_config_is_the_published_segmenter_recipe(repo_root, dataset, backbone, recipes):
    cfg = recipes(repo_root, dataset, "segmenter", f"segmenter_{backbone}")["real"]
    timm_name = BACKBONES[backbone]
    m, s = cfg.MODEL, cfg.SOLVER
    assert (m.META_ARCHITECTURE, m.BACKBONE.NAME, m.BACKBONE.TIMM_NAME) == ("EncoderDecoder", "ViTBackbone", timm_name)
    assert (
        m.SEM_SEG_HEAD.NAME == "SegmenterMaskTransformerHead"
        and m.SEM_SEG_HEAD.NUM_CLASSES == DATASETS[dataset]["classes"]
    )
    assert m.BACKBONE.DROP_PATH_RATE == 0.1 and m.BACKBONE.PRETRAINED.startswith("pretrained/")
    assert m.SEGMENTER.NUM_LAYERS == 2 and m.SEGMENTER.DROP_PATH_RATE == 0.1 and m.SEGMENTER.DROPOUT == 0.0
    assert list(m.PIXEL_MEAN) == [127.5] * 3 and list(m.PIXEL_STD) == [127.5] * 3
    assert (s.OPTIMIZER, s.BASE_LR, s.MOMENTUM, s.WEIGHT_DECAY, s.BACKBONE_MULTIPLIER) == ("SGD", 1e-3, 0.9, 0.0, 1.0)
    assert (s.LR_SCHEDULER_NAME, s.POLY_LR_POWER, s.WARMUP_ITERS, s.BASE_LR_END) == ("WarmupPolyLR", 0.9, 0, 1e-4)
    assert s.IMS_PER_BATCH == 8 and s.MAX_ITER == DATASETS[dataset]["real_iter"] and not s.CLIP_GRADIENTS.ENABLED
    assert list(cfg.INPUT.MIN_SIZE_TRAIN) == [256, 1024] and cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING == "range"
    assert list(cfg.INPUT.CROP.SIZE) == [512, 512] and cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA == 0.75
    window = cfg.TEST.SLIDING_WINDOW
    assert window.ENABLED and list(window.CROP_SIZE) == [512, 512] and list(window.STRIDE) == [480, 480]
    assert cfg.INPUT.MIN_SIZE_TEST == 512 and not cfg.TEST.AUG.ENABLED


@pytest.mark.parametrize("dataset,backbone", CASES)
def test_freemask_recipes_differ_from_real_only_exactly_as_published(
    repo_root, dataset, backbone, recipes, check_freemask_recipes
):
    check_freemask_recipes(recipes(repo_root, dataset, "segmenter", f"segmenter_{backbone}"), dataset)


def test_forward_groups_are_one_per_backbone_and_dataset(repo_root, forward_groups):
    assert [len(g) for g in forward_groups(repo_root, "segmenter")] == [4] * len(CASES)


@pytest.mark.parametrize("index", range(len(CASES)))
def test_every_config_builds_and_predicts_a_512_image(repo_root, index, forward_groups, predict_512):
    cfg, _ = predict_512(forward_groups(repo_root, "segmenter")[index][0])
    # A 512x512 test image is one sliding window: the forward above was the whole sliding-window inference.
    assert len(sliding_windows(512, 512, cfg.TEST.SLIDING_WINDOW.CROP_SIZE, cfg.TEST.SLIDING_WINDOW.STRIDE)) == 1
