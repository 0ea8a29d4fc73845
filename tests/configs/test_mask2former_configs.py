"""The Mask2Former configs of the FreeMask table: the published recipe, the FreeMask recipes relate to it as the paper
says, and every config builds and predicts a 512x512 image (see config_families.py for the grouping of forwards)."""

import pytest

DATASETS = {
    "ade20k/semantic-segmentation": {"classes": 150, "real_iter": 160000},
    "coco-stuff-164k/semantic-segmentation": {"classes": 171, "real_iter": 80000},
}
BACKBONES = {
    "ade20k/semantic-segmentation": ("R50", "swin_tiny", "swin_small", "swin_base"),
    "coco-stuff-164k/semantic-segmentation": ("R50", "swin_tiny", "swin_small"),
}
CASES = [(d, b) for d, backbones in BACKBONES.items() for b in backbones]


@pytest.mark.parametrize("dataset,backbone", CASES)
def test_published_recipe_and_freemask_variants(repo_root, dataset, backbone, recipes, check_freemask_recipes):
    cfgs = recipes(repo_root, dataset, "mask2former", f"maskformer2_{backbone}")
    real = cfgs["real"]
    assert real.MODEL.META_ARCHITECTURE == "MaskFormer"
    assert real.MODEL.SEM_SEG_HEAD.NUM_CLASSES == DATASETS[dataset]["classes"]
    assert real.SOLVER.MAX_ITER == DATASETS[dataset]["real_iter"] and real.SOLVER.IMS_PER_BATCH == 16
    assert (real.SOLVER.OPTIMIZER, real.SOLVER.BASE_LR, real.SOLVER.WEIGHT_DECAY) == ("ADAMW", 1e-4, 0.05)
    assert real.SOLVER.BACKBONE_MULTIPLIER == 0.1 and real.SOLVER.CLIP_GRADIENTS.CLIP_VALUE == 0.01
    assert real.MODEL.BACKBONE.PRETRAINED.startswith("pretrained/"), "real training starts from ImageNet weights"
    crop = 640 if backbone == "swin_base" else 512
    assert list(real.INPUT.CROP.SIZE) == [crop] * 2 and real.INPUT.MIN_SIZE_TEST == crop
    check_freemask_recipes(cfgs, dataset)


def test_forward_groups_are_one_per_backbone_and_dataset(repo_root, forward_groups):
    assert [len(g) for g in forward_groups(repo_root, "mask2former")] == [4] * len(CASES)


@pytest.mark.parametrize("index", range(len(CASES)))
def test_every_config_builds_and_predicts_a_512_image(repo_root, index, forward_groups, predict_512):
    predict_512(forward_groups(repo_root, "mask2former")[index][0])
