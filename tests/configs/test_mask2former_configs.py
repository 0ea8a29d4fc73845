"""The Mask2Former configs of the FreeMask table: recipes relate as the paper says, every config builds and runs.

A forward pass depends only on the MODEL (weights aside), INPUT and TEST sections, so configs are grouped by those
sections and one 512x512 forward runs per group: the test asserts the grouping, so every config's forward is covered
without paying for the same computation four times (one group = one backbone on one dataset, all four recipes).
"""

import glob
import os

import pytest
import torch

from freemask.config import get_cfg
from freemask.modeling import build_model

DATASETS = {
    "ade20k-150": {"classes": 150, "real_iter": 160000, "syn": "ade20k_syn_resampled_sem_seg_train"},
    "coco-stuff-164k-171": {"classes": 171, "real_iter": 80000, "syn": "coco_2017_syn_resampled_stuff_sem_seg_train"},
}
BACKBONES = {
    "ade20k-150": ("R50", "swin_tiny", "swin_small", "swin_base"),
    "coco-stuff-164k-171": ("R50", "swin_tiny", "swin_small"),
}


def load(path):
    cfg = get_cfg()
    cfg.merge_from_file(path)
    return cfg


def recipes(repo_root, dataset, backbone):
    """{recipe: config path} for one backbone on one dataset; exactly the four FreeMask recipes must exist."""
    paths = sorted(glob.glob(str(repo_root / "configs" / dataset / "mask2former" / f"maskformer2_{backbone}_*.yaml")))
    by_recipe = {}
    for path in paths:
        stem = os.path.basename(path)[: -len(".yaml")]
        recipe = next((r for r in ("joint", "synpretrain", "finetune") if stem.endswith(r)), "real")
        assert recipe not in by_recipe, f"two {recipe} configs for {backbone}: {by_recipe.get(recipe)}, {path}"
        by_recipe[recipe] = path
    assert set(by_recipe) == {"real", "joint", "synpretrain", "finetune"}, paths
    return by_recipe


def without(cfg, *keys):
    """The config as a plain dict with dotted ``keys`` removed, for comparing everything else."""
    tree = cfg.clone()
    tree.defrost()
    for key in keys:
        *parents, leaf = key.split(".")
        node = tree
        for p in parents:
            node = node[p]
        del node[leaf]
    return tree


@pytest.mark.parametrize("dataset,backbone", [(d, b) for d, backbones in BACKBONES.items() for b in backbones])
def test_freemask_recipes_differ_from_real_only_exactly_as_published(repo_root, dataset, backbone):
    facts = DATASETS[dataset]
    paths = recipes(repo_root, dataset, backbone)
    real, joint, pre, fine = (load(paths[r]) for r in ("real", "joint", "synpretrain", "finetune"))

    assert real.MODEL.META_ARCHITECTURE == "MaskFormer"
    assert real.MODEL.SEM_SEG_HEAD.NUM_CLASSES == facts["classes"]
    assert real.SOLVER.MAX_ITER == facts["real_iter"] and real.SOLVER.IMS_PER_BATCH == 16
    assert (real.SOLVER.OPTIMIZER, real.SOLVER.BASE_LR, real.SOLVER.WEIGHT_DECAY) == ("ADAMW", 1e-4, 0.05)
    assert real.SOLVER.BACKBONE_MULTIPLIER == 0.1 and real.SOLVER.CLIP_GRADIENTS.CLIP_VALUE == 0.01
    assert real.DATALOADER.SYN_RATIO == 0.0 and not real.DATASETS.TRAIN_SYN
    assert real.MODEL.BACKBONE.PRETRAINED.startswith("pretrained/"), "real training starts from ImageNet weights"
    expected_crop = 640 if backbone == "swin_base" else 512
    assert list(real.INPUT.CROP.SIZE) == [expected_crop] * 2 and real.INPUT.MIN_SIZE_TEST == expected_crop

    # Joint: half real, half synthetic batches, twice the iterations, nothing else changed.
    assert joint.DATALOADER.SYN_RATIO == 0.5 and tuple(joint.DATASETS.TRAIN_SYN) == (facts["syn"],)
    assert joint.SOLVER.MAX_ITER == 2 * real.SOLVER.MAX_ITER
    changed = ("DATALOADER.SYN_RATIO", "DATASETS.TRAIN_SYN", "SOLVER.MAX_ITER", "OUTPUT_DIR")
    assert without(joint, *changed) == without(real, *changed)

    # Synthetic pre-training: the real recipe on the synthetic set, evaluated on real images.
    assert tuple(pre.DATASETS.TRAIN) == (facts["syn"],) and tuple(pre.DATASETS.TEST) == tuple(real.DATASETS.TEST)
    assert without(pre, "DATASETS.TRAIN", "OUTPUT_DIR") == without(real, "DATASETS.TRAIN", "OUTPUT_DIR")

    # Fine-tuning: the pre-trained model, base lr halved for the whole model, same schedule.
    assert fine.MODEL.WEIGHTS == os.path.join(pre.OUTPUT_DIR, "model_final.pth")
    assert fine.SOLVER.BASE_LR == real.SOLVER.BASE_LR / 2
    changed = ("MODEL.WEIGHTS", "SOLVER.BASE_LR", "OUTPUT_DIR")
    assert without(fine, *changed) == without(real, *changed)

    assert len({c.OUTPUT_DIR for c in (real, joint, pre, fine)}) == 4, "recipes must not overwrite each other"


def forward_groups(repo_root):
    """{(MODEL without WEIGHTS, INPUT, TEST) as YAML: [config paths]} over every Mask2Former config."""
    groups = {}
    for dataset in DATASETS:
        for path in sorted(glob.glob(str(repo_root / "configs" / dataset / "mask2former" / "*.yaml"))):
            cfg = load(path)
            key = "".join(without(cfg, "MODEL.WEIGHTS")[s].dump() for s in ("MODEL", "INPUT", "TEST"))
            groups.setdefault(key, []).append(path)
    return groups


def test_forward_groups_are_one_per_backbone_and_dataset(repo_root):
    groups = forward_groups(repo_root)
    assert sum(len(g) for g in groups.values()) == 4 * sum(len(b) for b in BACKBONES.values())
    assert sorted(len(g) for g in groups.values()) == [4] * sum(len(b) for b in BACKBONES.values())


@pytest.mark.parametrize("index", range(sum(len(b) for b in BACKBONES.values())))
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
    assert scores.shape == (cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES, 512, 512), paths
    assert torch.isfinite(scores).all()
