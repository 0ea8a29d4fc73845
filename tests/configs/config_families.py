"""What the config tests of every model family share: finding a family's four FreeMask recipes, comparing configs
key by key, and one 512x512 forward per group of configs that compute the same thing.

A forward pass depends only on the MODEL (weights aside), INPUT and TEST sections, so configs are grouped by those
and one forward runs per group; the tests assert the grouping (one group = one backbone on one dataset, its four
recipes), so every config's forward is covered without paying for the same computation four times.
"""

import glob
import os
from typing import Dict, List

import torch

from freemask.config import CfgNode, get_cfg
from freemask.modeling import build_model

RECIPES = ("real", "joint", "synpretrain", "finetune")
SYNTHETIC = {
    "ade20k/semantic-segmentation": "ade20k_syn_resampled_sem_seg_train",
    "coco-stuff-164k/semantic-segmentation": "coco_2017_syn_resampled_stuff_sem_seg_train",
}


def load(path: str) -> CfgNode:
    cfg = get_cfg()
    cfg.merge_from_file(path)
    return cfg


def recipes(repo_root, dataset: str, family: str, prefix: str) -> Dict[str, CfgNode]:
    """{recipe: config} of the files ``configs/<dataset>/<family>/<prefix>_*.yaml`` (``dataset``: the dataset and task
    folders, e.g. ``ade20k/semantic-segmentation``); exactly the four must exist."""
    paths = sorted(glob.glob(str(repo_root / "configs" / dataset / family / f"{prefix}_*.yaml")))
    by_recipe = {}
    for path in paths:
        stem = os.path.basename(path)[: -len(".yaml")]
        recipe = next((r for r in RECIPES[1:] if stem.endswith(r)), "real")
        assert recipe not in by_recipe, f"two {recipe} configs: {by_recipe.get(recipe)}, {path}"
        by_recipe[recipe] = path
    assert set(by_recipe) == set(RECIPES), paths
    return {recipe: load(path) for recipe, path in by_recipe.items()}


def without(cfg: CfgNode, *keys: str) -> CfgNode:
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


def check_freemask_recipes(cfgs: Dict[str, CfgNode], dataset: str, joint_also_changes: tuple = ()) -> None:
    """Joint, synthetic pre-training and fine-tuning differ from real-only exactly as the FreeMask paper says."""
    real, joint, pre, fine = (cfgs[r] for r in RECIPES)
    assert real.DATALOADER.SYN_RATIO == 0.0 and not real.DATASETS.TRAIN_SYN

    # Joint: half real, half synthetic batches, twice the iterations, nothing else changed.
    assert joint.DATALOADER.SYN_RATIO == 0.5 and tuple(joint.DATASETS.TRAIN_SYN) == (SYNTHETIC[dataset],)
    assert joint.SOLVER.MAX_ITER == 2 * real.SOLVER.MAX_ITER
    changed = ("DATALOADER.SYN_RATIO", "DATASETS.TRAIN_SYN", "SOLVER.MAX_ITER", "OUTPUT_DIR", *joint_also_changes)
    assert without(joint, *changed) == without(real, *changed)

    # Synthetic pre-training: the real recipe on the synthetic set, evaluated on real images.
    assert tuple(pre.DATASETS.TRAIN) == (SYNTHETIC[dataset],) and tuple(pre.DATASETS.TEST) == tuple(real.DATASETS.TEST)
    assert without(pre, "DATASETS.TRAIN", "OUTPUT_DIR") == without(real, "DATASETS.TRAIN", "OUTPUT_DIR")

    # Fine-tuning: the pre-trained model, base lr halved for the whole model, same schedule.
    assert fine.MODEL.WEIGHTS == os.path.join(pre.OUTPUT_DIR, "model_final.pth")
    assert fine.SOLVER.BASE_LR == real.SOLVER.BASE_LR / 2
    changed = ("MODEL.WEIGHTS", "SOLVER.BASE_LR", "OUTPUT_DIR")
    assert without(fine, *changed) == without(real, *changed)

    assert len({c.OUTPUT_DIR for c in cfgs.values()}) == 4, "recipes must not overwrite each other"


def forward_groups(repo_root, family: str) -> List[List[str]]:
    """Config paths of ``configs/<dataset>/semantic-segmentation/<family>/`` grouped by (MODEL without WEIGHTS, INPUT,
    TEST), in a stable order."""
    groups: Dict[str, List[str]] = {}
    for dataset in SYNTHETIC:
        for path in sorted(glob.glob(str(repo_root / "configs" / dataset / family / "*.yaml"))):
            cfg = load(path)
            key = "".join(without(cfg, "MODEL.WEIGHTS")[s].dump() for s in ("MODEL", "INPUT", "TEST"))
            groups.setdefault(key, []).append(path)
    return sorted(groups.values())


def predict_512(path: str) -> tuple:
    """(config, class scores) of the config's model, random weights, on one random 512x512 image."""
    cfg = load(path)
    cfg.merge_from_list(["MODEL.BACKBONE.PRETRAINED", "", "MODEL.DEVICE", "cpu"])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    image = torch.randint(0, 256, (3, 512, 512), dtype=torch.uint8)
    with torch.no_grad():
        (output,) = model([{"image": image, "height": 512, "width": 512}])
    scores = output["sem_seg"]
    assert scores.shape == (cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES, 512, 512), path
    assert torch.isfinite(scores).all(), path
    return cfg, scores
