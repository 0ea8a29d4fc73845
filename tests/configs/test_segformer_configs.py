"""The SegFormer configs of the FreeMask table: the published recipe, recipes relating as the paper says, and every
config building and predicting a 512x512 image (see config_families.py for the grouping of forwards)."""

import pytest

DATASETS = {
    "ade20k/semantic-segmentation": {"classes": 150, "real_iter": 160000, "joint_warmup": 3000},
    "coco-stuff-164k/semantic-segmentation": {"classes": 171, "real_iter": 80000, "joint_warmup": 1500},
}
VARIANTS = ("b2", "b4")


@pytest.mark.parametrize("dataset,variant", [(d, v) for d in DATASETS for v in VARIANTS])
def test_published_recipe_and_freemask_variants(repo_root, dataset, variant, recipes, check_freemask_recipes):
    facts = DATASETS[dataset]
    cfgs = recipes(repo_root, dataset, "segformer", f"segformer_mit_{variant}")
    real, joint, fine = cfgs["real"], cfgs["joint"], cfgs["finetune"]

    m, s = real.MODEL, real.SOLVER
    assert (m.META_ARCHITECTURE, m.BACKBONE.NAME, m.SEM_SEG_HEAD.NAME) == (
        "EncoderDecoder",
        "MixTransformer",
        "SegFormerHead",
    )
    assert m.BACKBONE.MIT.VARIANT == variant and m.BACKBONE.PRETRAINED == f"pretrained/mit_{variant}.pth"
    assert m.SEM_SEG_HEAD.NUM_CLASSES == facts["classes"] and m.SEGFORMER.DECODER_DIM == 256
    assert (m.BACKBONE.DROP_PATH_RATE, m.SEM_SEG_HEAD.DROPOUT, m.SEM_SEG_HEAD.NORM) == (0.1, 0.1, "SyncBN")
    assert (s.OPTIMIZER, s.BASE_LR, tuple(s.BETAS), s.WEIGHT_DECAY, s.WEIGHT_DECAY_NORM) == (
        "ADAMW", 6e-5, (0.9, 0.999), 0.01, 0.0
    )  # fmt: skip
    assert s.BACKBONE_MULTIPLIER == 1.0 and [list(x) for x in s.CUSTOM_MULTIPLIERS] == [["sem_seg_head.", 10.0, 1.0]]
    assert (s.LR_SCHEDULER_NAME, s.POLY_LR_POWER, s.WARMUP_METHOD, s.WARMUP_ITERS, s.WARMUP_FACTOR) == (
        "WarmupPolyLR", 1.0, "linear", 1500, 1e-6
    )  # fmt: skip
    assert s.IMS_PER_BATCH == 16 and s.MAX_ITER == facts["real_iter"] and not s.CLIP_GRADIENTS.ENABLED
    assert (real.INPUT.MIN_SIZE_TRAIN_SAMPLING, list(real.INPUT.MIN_SIZE_TRAIN)) == ("range", [256, 1024])
    assert list(real.INPUT.CROP.SIZE) == [512, 512] and real.INPUT.SIZE_DIVISIBILITY == 0
    assert not real.TEST.SLIDING_WINDOW.ENABLED and real.DATALOADER.SYN_RATIO == 0.0

    assert joint.SOLVER.WARMUP_ITERS == facts["joint_warmup"] and fine.SOLVER.BASE_LR == 3e-5
    check_freemask_recipes(cfgs, dataset, joint_also_changes=("SOLVER.WARMUP_ITERS",))


def test_forward_groups_are_one_per_size_and_dataset(repo_root, forward_groups):
    groups = forward_groups(repo_root, "segformer")
    assert [len(g) for g in groups] == [4] * len(DATASETS) * len(VARIANTS)


@pytest.mark.parametrize("index", range(len(DATASETS) * len(VARIANTS)))
def test_every_config_builds_and_predicts_a_512_image(repo_root, index, forward_groups, predict_512):
    predict_512(forward_groups(repo_root, "segformer")[index][0])
