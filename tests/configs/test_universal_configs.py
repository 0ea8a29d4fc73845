"""The panoptic / instance Mask2Former configs: Mask2Former's model zoo values, one model per config, and a forward at
the real test input size that gives panoptic / instance outputs of the right shapes.

Forward cost on this CPU (one thread, random weights, COCO 800x1067 input): R-50 17 s, Swin-L 49 s and 5.5 GB. So
two R-50 configs (and the toys) run a real forward with the post-processing here, and every config does in
``bench/universal_forward.py``; the others build on the meta device (no memory, no init) and are checked by shape:
the class head, the queries and the parameter count of the published model. Their forward is that of the R-50 config
of the same task with other widths or a smaller class head (the same code: TimmBackbone, the pixel decoder and
decoder).
"""

import glob
import os

import pytest
import torch
from fvcore.nn import parameter_count

from freemask.config import get_cfg
from freemask.data import MetadataCatalog
from freemask.modeling import build_model
from freemask.modeling.postprocess import UniversalPostprocess

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BACKBONES = ("R50", "swin_tiny", "swin_small", "swin_base_IN21k_384", "swin_large_IN21k_384")
# (dataset, task): classes, thing classes, train / test sets, mapper, schedule suffix, iterations
TASKS = {
    ("coco", "panoptic"): (
        133,
        80,
        "coco_2017_train_panoptic",
        "coco_2017_val_panoptic_with_sem_seg",
        "coco_panoptic_lsj",
        "50ep",
        368750,
    ),
    ("coco", "instance"): (80, 80, "coco_2017_train", "coco_2017_val", "coco_instance_lsj", "50ep", 368750),
    ("ade20k", "panoptic"): (
        150,
        100,
        "ade20k_panoptic_train",
        "ade20k_panoptic_val",
        "mask_former_panoptic",
        "160k",
        160000,
    ),
    ("ade20k", "instance"): (
        100,
        100,
        "ade20k_instance_train",
        "ade20k_instance_val",
        "mask_former_instance",
        "160k",
        160000,
    ),
}
# Parameters of the published models (Mask2Former MODEL_ZOO.md: 44M, 47M, 69M, 107M, 216M), in millions.
PARAMS = {"R50": 44, "swin_tiny": 47, "swin_small": 69, "swin_base_IN21k_384": 107, "swin_large_IN21k_384": 216}
# Test input (image at the test resize) and original size of a typical image of each dataset.
INPUT = {"coco": ((800, 1067), (480, 640)), "ade20k": ((640, 853), (512, 683))}
# A real forward at the real test size for one config per mapper family (COCO LSJ panoptic with all three outputs, ADE
# instance); `python bench/universal_forward.py` runs it for every shipped config (figures in bench/RESULTS.md).
REAL = [("coco", "panoptic", "R50"), ("ade20k", "instance", "R50")]


def _path(dataset, task, backbone):
    sched = "100ep" if dataset == "coco" and backbone == "swin_large_IN21k_384" else TASKS[dataset, task][5]
    folder = "" if backbone == "R50" else "swin"
    return os.path.join(
        REPO, "configs", dataset, f"{task}-segmentation", folder, f"maskformer2_{backbone}_bs16_{sched}.yaml"
    )


CASES = [(d, t, b) for (d, t) in TASKS for b in BACKBONES]


def load(path):
    cfg = get_cfg()
    cfg.merge_from_file(path)
    return cfg


def test_exactly_the_model_zoo_files_are_shipped():
    shipped = [
        path
        for task in ("panoptic-segmentation", "instance-segmentation")
        for path in glob.glob(os.path.join(REPO, "configs", "*", task, "**", "maskformer2_*.yaml"), recursive=True)
    ]
    assert sorted(shipped) == sorted(_path(*case) for case in CASES)


@pytest.mark.parametrize("dataset,task,backbone", CASES)
def test_values_are_the_official_ones(dataset, task, backbone):
    classes, things, train, test, mapper, _, iters = TASKS[dataset, task]
    cfg = load(_path(dataset, task, backbone))
    m, t = cfg.MODEL.MASK_FORMER, cfg.MODEL.MASK_FORMER.TEST
    assert cfg.MODEL.META_ARCHITECTURE == "MaskFormer" and cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES == classes
    assert (tuple(cfg.DATASETS.TRAIN), tuple(cfg.DATASETS.TEST)) == ((train,), (test,))
    assert cfg.INPUT.DATASET_MAPPER_NAME == mapper
    assert (m.CLASS_WEIGHT, m.MASK_WEIGHT, m.DICE_WEIGHT, m.NO_OBJECT_WEIGHT) == (2.0, 5.0, 5.0, 0.1)
    assert (m.DEC_LAYERS, m.TRAIN_NUM_POINTS) == (9, 12544)
    assert m.NUM_OBJECT_QUERIES == (200 if backbone == "swin_large_IN21k_384" else 100)
    if task == "panoptic":
        assert (t.SEMANTIC_ON, t.INSTANCE_ON, t.PANOPTIC_ON) == (True, True, True)
        assert (t.OVERLAP_THRESHOLD, t.OBJECT_MASK_THRESHOLD) == (0.8, 0.8)
    else:
        assert (t.SEMANTIC_ON, t.INSTANCE_ON, t.PANOPTIC_ON) == (False, True, False)
    assert cfg.TEST.DETECTIONS_PER_IMAGE == 100 and cfg.TEST.SIZE_DIVISIBILITY == 32
    assert not cfg.TEST.SLIDING_WINDOW.ENABLED and not cfg.TEST.AUG.ENABLED
    s = cfg.SOLVER
    assert (s.IMS_PER_BATCH, s.OPTIMIZER, s.BASE_LR, s.WEIGHT_DECAY, s.BACKBONE_MULTIPLIER) == (
        16,
        "ADAMW",
        1e-4,
        0.05,
        0.1,
    )
    assert s.CLIP_GRADIENTS.ENABLED and s.CLIP_GRADIENTS.CLIP_VALUE == 0.01 and s.AMP.ENABLED
    assert s.AMP.DTYPE == "float16" and s.WARMUP_FACTOR == 1.0
    if dataset == "coco":
        long = backbone == "swin_large_IN21k_384"
        assert s.MAX_ITER == (2 * iters if long else iters)
        assert s.LR_SCHEDULER_NAME == "WarmupMultiStepLR" and s.WARMUP_ITERS == 10
        assert list(s.STEPS) == ([655556, 710184] if long else [327778, 355092])
        assert (cfg.INPUT.IMAGE_SIZE, cfg.INPUT.MIN_SCALE, cfg.INPUT.MAX_SCALE) == (1024, 0.1, 2.0)
        assert (cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST) == (800, 1333)
    else:
        assert s.MAX_ITER == iters and s.LR_SCHEDULER_NAME == "WarmupPolyLR" and s.WARMUP_ITERS == 0
        assert list(cfg.INPUT.MIN_SIZE_TRAIN) == [int(x * 0.1 * 640) for x in range(5, 21)]
        assert list(cfg.INPUT.CROP.SIZE) == [640, 640] and cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA == 1.0
        assert (cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TEST) == (640, 2560, 2560)
        assert cfg.INPUT.SIZE_DIVISIBILITY == 640 and cfg.INPUT.COLOR_AUG_SSD
    assert cfg.MODEL.BACKBONE.PRETRAINED.startswith("pretrained/")
    metadata = MetadataCatalog.get(test)
    thing_ids = UniversalPostprocess.from_config(cfg, metadata).thing_ids
    assert len(thing_ids) == things and max(thing_ids) < classes


@pytest.mark.parametrize("dataset,task,backbone", [c for c in CASES if c not in REAL])
def test_large_configs_build_the_published_model(dataset, task, backbone):
    cfg = load(_path(dataset, task, backbone))
    cfg.merge_from_list(["MODEL.BACKBONE.PRETRAINED", "", "MODEL.DEVICE", "meta"])
    model = build_model(cfg)
    head = model.transformer_decoder.class_embed
    assert head.out_features == cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES + 1
    assert model.transformer_decoder.query_feat.num_embeddings == cfg.MODEL.MASK_FORMER.NUM_OBJECT_QUERIES
    assert round(parameter_count(model)[""] / 1e6) == PARAMS[backbone]


def _check_outputs(cfg, output, height, width, thing_ids):
    t = cfg.MODEL.MASK_FORMER.TEST
    assert set(output) == {
        k for k, on in (("sem_seg", t.SEMANTIC_ON), ("panoptic_seg", t.PANOPTIC_ON), ("instances", t.INSTANCE_ON)) if on
    }
    if t.SEMANTIC_ON:
        assert output["sem_seg"].shape == (cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES, height, width)
    if t.PANOPTIC_ON:
        seg, info = output["panoptic_seg"]
        assert seg.shape == (height, width) and seg.dtype == torch.int32
        assert set(seg.unique().tolist()) <= {0} | {s["id"] for s in info}
    instances = output["instances"]
    n = instances["scores"].shape[0]
    assert n <= cfg.TEST.DETECTIONS_PER_IMAGE  # with panoptic on, only thing classes: possibly none for random weights
    assert instances["pred_masks"].shape == (n, height, width) and instances["pred_masks"].dtype == torch.bool
    assert set(instances["pred_classes"].tolist()) <= set(thing_ids)


def _forward(cfg, size, original):
    cfg.merge_from_list(["MODEL.BACKBONE.PRETRAINED", "", "MODEL.DEVICE", "cpu"])
    postprocess = UniversalPostprocess.from_config(cfg, MetadataCatalog.get(cfg.DATASETS.TEST[0]))
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    image = torch.randint(0, 256, (3, *size), dtype=torch.uint8)
    with torch.no_grad():
        (output,) = model([{"image": image, "height": original[0], "width": original[1]}], postprocess=postprocess)
    _check_outputs(cfg, output, *original, postprocess.thing_ids)


@pytest.mark.parametrize("dataset,task,backbone", REAL)
def test_config_forwards_at_its_test_size(dataset, task, backbone):
    """Threads capped at 2 whatever the machine has: CI runners share cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(min(threads, 2))
    try:
        _forward(load(_path(dataset, task, backbone)), *INPUT[dataset])
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("name,classes,task", [("panoptic", 6, "panoptic"), ("instance", 2, "instance")])
def test_toy_configs(name, classes, task):
    cfg = load(os.path.join(REPO, "configs", "toy", f"{name}-segmentation", f"mask2former_R18_toy_{name}.yaml"))
    assert cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES == classes
    assert tuple(cfg.DATASETS.TRAIN) == (f"toy_{name}_train",) and tuple(cfg.DATASETS.TEST) == (f"toy_{name}_val",)
    assert cfg.INPUT.DATASET_MAPPER_NAME == f"mask_former_{name}"
    assert cfg.MODEL.MASK_FORMER.TEST.PANOPTIC_ON == (task == "panoptic") and cfg.MODEL.MASK_FORMER.TEST.INSTANCE_ON
    _forward(cfg, (128, 171), (96, 128))
