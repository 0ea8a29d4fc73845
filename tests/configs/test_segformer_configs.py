"""The SegFormer configs of the FreeMask table: the published recipe, recipes relating as the paper says, and every
config building and predicting a 512x512 image.

A forward pass depends only on the MODEL (weights aside), INPUT and TEST sections, so configs are grouped by those and
one forward runs per group; the grouping itself is asserted (one group = one MiT size on one dataset, four recipes).
"""

import glob
import os

import pytest
import torch

from freemask.config import get_cfg
from freemask.modeling import build_model

DATASETS = {
    "ade20k-150": {"classes": 150, "real_iter": 160000, "joint_warmup": 3000},
    "coco-stuff-164k-171": {"classes": 171, "real_iter": 80000, "joint_warmup": 1500},
}
VARIANTS = ("b2", "b4")
RECIPES = ("real", "joint", "synpretrain", "finetune")


def load(path):
    cfg = get_cfg()
    cfg.merge_from_file(path)
    return cfg


def recipes(repo_root, dataset, variant):
    """{recipe: config} for one MiT size on one dataset; exactly the four FreeMask recipes must exist."""
    paths = sorted(glob.glob(str(repo_root / "configs" / dataset / "segformer" / f"segformer_mit_{variant}_*.yaml")))
    by_recipe = {}
    for path in paths:
        stem = os.path.basename(path)[: -len(".yaml")]
        recipe = next((r for r in RECIPES[1:] if stem.endswith(r)), "real")
        assert recipe not in by_recipe, f"two {recipe} configs: {by_recipe.get(recipe)}, {path}"
        by_recipe[recipe] = path
    assert set(by_recipe) == set(RECIPES), paths
    return {recipe: load(path) for recipe, path in by_recipe.items()}


def without(cfg, *keys):
    """The config with dotted ``keys`` removed, for comparing everything else."""
    tree = cfg.clone()
    tree.defrost()
    for key in keys:
        *parents, leaf = key.split(".")
        node = tree
        for p in parents:
            node = node[p]
        del node[leaf]
    return tree


@pytest.mark.parametrize("dataset,variant", [(d, v) for d in DATASETS for v in VARIANTS])
def test_published_recipe_and_freemask_variants(repo_root, dataset, variant):
    facts = DATASETS[dataset]
    cfgs = recipes(repo_root, dataset, variant)
    real, joint, pre, fine = (cfgs[r] for r in RECIPES)

    m, s = real.MODEL, real.SOLVER
    assert (m.META_ARCHITECTURE, m.BACKBONE.NAME, m.SEM_SEG_HEAD.NAME) == (
        "EncoderDecoder",
        "MixTransformer",
        "SegFormerHead",
    )
    assert m.SEGFORMER.VARIANT == variant and m.BACKBONE.PRETRAINED == f"pretrained/mit_{variant}.pth"
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

    changed = ("DATALOADER.SYN_RATIO", "DATASETS.TRAIN_SYN", "SOLVER.MAX_ITER", "SOLVER.WARMUP_ITERS", "OUTPUT_DIR")
    assert joint.DATALOADER.SYN_RATIO == 0.5 and joint.DATASETS.TRAIN_SYN
    assert joint.SOLVER.MAX_ITER == 2 * s.MAX_ITER and joint.SOLVER.WARMUP_ITERS == facts["joint_warmup"]
    assert without(joint, *changed) == without(real, *changed)

    assert pre.DATASETS.TRAIN == joint.DATASETS.TRAIN_SYN and pre.DATASETS.TEST == real.DATASETS.TEST
    assert without(pre, "DATASETS.TRAIN", "OUTPUT_DIR") == without(real, "DATASETS.TRAIN", "OUTPUT_DIR")

    assert fine.MODEL.WEIGHTS == os.path.join(pre.OUTPUT_DIR, "model_final.pth") and fine.SOLVER.BASE_LR == 3e-5
    changed = ("MODEL.WEIGHTS", "SOLVER.BASE_LR", "OUTPUT_DIR")
    assert without(fine, *changed) == without(real, *changed)
    assert len({c.OUTPUT_DIR for c in cfgs.values()}) == 4, "recipes must not overwrite each other"


def forward_groups(repo_root):
    """{(MODEL without WEIGHTS, INPUT, TEST) as YAML: [config paths]} over every SegFormer config."""
    groups = {}
    for dataset in DATASETS:
        for path in sorted(glob.glob(str(repo_root / "configs" / dataset / "segformer" / "*.yaml"))):
            cfg = load(path)
            key = "".join(without(cfg, "MODEL.WEIGHTS")[s].dump() for s in ("MODEL", "INPUT", "TEST"))
            groups.setdefault(key, []).append(path)
    return groups


def test_forward_groups_are_one_per_size_and_dataset(repo_root):
    groups = forward_groups(repo_root)
    assert sorted(len(g) for g in groups.values()) == [len(RECIPES)] * len(DATASETS) * len(VARIANTS)


@pytest.mark.parametrize("index", range(len(DATASETS) * len(VARIANTS)))
def test_every_config_builds_and_predicts_a_512_image(repo_root, index):
    paths = sorted(forward_groups(repo_root).values())[index]
    cfg = load(paths[0])
    cfg.merge_from_list(["MODEL.BACKBONE.PRETRAINED", "", "MODEL.DEVICE", "cpu"])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    image = torch.randint(0, 256, (3, 512, 512), dtype=torch.uint8)
    with torch.no_grad():
        (output,) = model([{"image": image, "height": 512, "width": 512}])
    scores = output["sem_seg"]
    assert scores.shape == (cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES, 512, 512) and torch.isfinite(scores).all()
