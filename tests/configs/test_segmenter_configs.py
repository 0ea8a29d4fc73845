"""The Segmenter configs of the FreeMask table: the published recipe, the FreeMask recipes relate to it as the paper
says, and every config builds and predicts a 512x512 image.

As for Mask2Former, configs are grouped by what a forward pass depends on (MODEL without WEIGHTS, INPUT, TEST): one
group per backbone and dataset, holding its four recipes, so one forward per group covers every config.
"""

import glob
import os

import pytest
import torch

from freemask.config import get_cfg
from freemask.evaluation.inference import sliding_windows
from freemask.modeling import build_model

DATASETS = {
    "ade20k-150": {"classes": 150, "real_iter": 160000, "syn": "ade20k_syn_resampled_sem_seg_train"},
    "coco-stuff-164k-171": {"classes": 171, "real_iter": 80000, "syn": "coco_2017_syn_resampled_stuff_sem_seg_train"},
}
BACKBONES = {"vit_small": "vit_small_patch16_384", "vit_base": "vit_base_patch16_384"}
CASES = [(d, b) for d in DATASETS for b in BACKBONES]


def load(path):
    cfg = get_cfg()
    cfg.merge_from_file(path)
    return cfg


def recipes(repo_root, dataset, backbone):
    """{recipe: config path} for one backbone on one dataset; exactly the four FreeMask recipes must exist."""
    paths = sorted(glob.glob(str(repo_root / "configs" / dataset / "segmenter" / f"segmenter_{backbone}_*.yaml")))
    by_recipe = {}
    for path in paths:
        stem = os.path.basename(path)[: -len(".yaml")]
        recipe = next((r for r in ("joint", "synpretrain", "finetune") if stem.endswith(r)), "real")
        assert recipe not in by_recipe, f"two {recipe} configs for {backbone}: {by_recipe.get(recipe)}, {path}"
        by_recipe[recipe] = path
    assert set(by_recipe) == {"real", "joint", "synpretrain", "finetune"}, paths
    return by_recipe


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


@pytest.mark.parametrize("dataset,backbone", CASES)
def test_real_only_config_is_the_published_segmenter_recipe(repo_root, dataset, backbone):
    cfg = load(recipes(repo_root, dataset, backbone)["real"])
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
def test_freemask_recipes_differ_from_real_only_exactly_as_published(repo_root, dataset, backbone):
    facts = DATASETS[dataset]
    paths = recipes(repo_root, dataset, backbone)
    real, joint, pre, fine = (load(paths[r]) for r in ("real", "joint", "synpretrain", "finetune"))

    assert joint.DATALOADER.SYN_RATIO == 0.5 and tuple(joint.DATASETS.TRAIN_SYN) == (facts["syn"],)
    assert joint.SOLVER.MAX_ITER == 2 * real.SOLVER.MAX_ITER
    changed = ("DATALOADER.SYN_RATIO", "DATASETS.TRAIN_SYN", "SOLVER.MAX_ITER", "OUTPUT_DIR")
    assert without(joint, *changed) == without(real, *changed)

    assert tuple(pre.DATASETS.TRAIN) == (facts["syn"],) and tuple(pre.DATASETS.TEST) == tuple(real.DATASETS.TEST)
    assert without(pre, "DATASETS.TRAIN", "OUTPUT_DIR") == without(real, "DATASETS.TRAIN", "OUTPUT_DIR")

    assert fine.MODEL.WEIGHTS == os.path.join(pre.OUTPUT_DIR, "model_final.pth")
    assert fine.SOLVER.BASE_LR == real.SOLVER.BASE_LR / 2
    changed = ("MODEL.WEIGHTS", "SOLVER.BASE_LR", "OUTPUT_DIR")
    assert without(fine, *changed) == without(real, *changed)

    assert len({c.OUTPUT_DIR for c in (real, joint, pre, fine)}) == 4, "recipes must not overwrite each other"


def forward_groups(repo_root):
    """{(MODEL without WEIGHTS, INPUT, TEST) as YAML: [config paths]} over every Segmenter config."""
    groups = {}
    for dataset in DATASETS:
        for path in sorted(glob.glob(str(repo_root / "configs" / dataset / "segmenter" / "*.yaml"))):
            cfg = load(path)
            key = "".join(without(cfg, "MODEL.WEIGHTS")[s].dump() for s in ("MODEL", "INPUT", "TEST"))
            groups.setdefault(key, []).append(path)
    return groups


def test_forward_groups_are_one_per_backbone_and_dataset(repo_root):
    assert sorted(len(g) for g in forward_groups(repo_root).values()) == [4] * len(CASES)


@pytest.mark.parametrize("index", range(len(CASES)))
def test_every_config_builds_and_predicts_a_512_image(repo_root, index):
    paths = sorted(forward_groups(repo_root).values())[index]
    cfg = load(paths[0])
    cfg.merge_from_list(["MODEL.BACKBONE.PRETRAINED", "", "MODEL.DEVICE", "cpu"])
    # A 512x512 test image is one sliding window: the forward below is the whole sliding-window inference.
    assert len(sliding_windows(512, 512, cfg.TEST.SLIDING_WINDOW.CROP_SIZE, cfg.TEST.SLIDING_WINDOW.STRIDE)) == 1
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    image = torch.randint(0, 256, (3, 512, 512), dtype=torch.uint8)
    with torch.no_grad():
        (output,) = model([{"image": image, "height": 512, "width": 512}])
    scores = output["sem_seg"]
    assert scores.shape == (cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES, 512, 512), paths
    assert torch.isfinite(scores).all()
