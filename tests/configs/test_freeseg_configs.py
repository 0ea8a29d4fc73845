"""Every shipped FreeSeg config: it loads, names registered datasets and a known mapper, and trains as many classes
as its training split names (the class head has no fixed size, the criterion does); the COCO stage-2 config and a
R101c ADE20K and a stage-1 config build their models at full size (random ViT-B/16 CLIP, no weights read). The test
sets are FreeSeg's, with its flags and class names (bytedance/FreeSeg's configs and registrations)."""

import glob
import os

import pytest
import torch

from freemask.data import DatasetCatalog, MetadataCatalog
from freemask.data.mappers.build import MAPPERS
from freemask.engine.defaults import setup_cfg
from freemask.modeling import META_ARCH_REGISTRY, build_model

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = sorted(p for p in glob.glob(os.path.join(REPO, "configs", "**", "freeseg*.yaml"), recursive=True)
                 if "/common/" not in p)  # the shared recipes name no datasets
NO_FILES = ["MODEL.CLIP_ADAPTER.CLIP_WEIGHTS", "", "MODEL.BACKBONE.PRETRAINED", "", "MODEL.DEVICE", "cpu"]


def test_the_three_settings_and_the_toy_are_shipped():
    folders = {os.path.relpath(os.path.dirname(path), os.path.join(REPO, "configs")) for path in CONFIGS}
    settings = {f"{dataset}/open-vocabulary/freeseg" for dataset in ("coco-stuff-164k", "ade20k", "pascal-voc")}
    assert settings | {"toy/open-vocabulary"} <= folders
    assert len(CONFIGS) >= 12


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.relpath(p, REPO))
def test_config_is_consistent_with_its_data(path):
    cfg = setup_cfg(path, NO_FILES)
    assert cfg.MODEL.META_ARCHITECTURE in ("OpenVocabulary", "ProposalClipClassifier")
    assert cfg.MODEL.META_ARCHITECTURE in META_ARCH_REGISTRY
    assert cfg.INPUT.DATASET_MAPPER_NAME in MAPPERS
    for name in (*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST):
        assert name in DatasetCatalog, name
    train = MetadataCatalog.get(cfg.DATASETS.TRAIN[0])
    assert len(train.stuff_classes) == cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
    tests = [MetadataCatalog.get(name) for name in cfg.DATASETS.TEST]
    # a test vocabulary holds the seen classes (FreeSeg's COCO panoptic set names its 133 classes its own way)
    assert any(set(train.stuff_classes) <= set(test.stuff_classes) for test in tests)
    test = tests[0]
    if cfg.MODEL.META_ARCHITECTURE == "ProposalClipClassifier":
        assert test.evaluator_type == "classification" and cfg.DATASETS.SAMPLE_PER_CLASS > 0
        return
    assert all(0 in t.trainable_flag and 1 in t.trainable_flag for t in tests)  # seen and unseen classes scored
    if "/toy/" not in path:  # the toy shrinks every size
        assert cfg.MODEL.MASK_FORMER.DEC_LAYERS == 10  # FreeSeg's OpenTransformerPredictor runs 10 layers
    assert cfg.MODEL.SEM_SEG_HEAD.EMB_SIZE == cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM
    tasks = {"instance segmentation.", "panoptic segmentation."}
    if tasks <= set(cfg.INPUT.TASK_NAME):
        assert cfg.INPUT.DATASET_MAPPER_NAME == "open_vocab_all_task"


@pytest.mark.parametrize(
    "relative", ["coco-stuff-164k/open-vocabulary/freeseg/freeseg_R50_alltask_bs32_60k.yaml",
                 "ade20k/open-vocabulary/freeseg/freeseg_R101c_alltask_bs32_60k.yaml",
                 "pascal-voc/open-vocabulary/freeseg/freeseg_learn_prompt_bs32_3200.yaml"],
)  # fmt: skip
def test_full_size_models_build(relative):
    cfg = setup_cfg(os.path.join(REPO, "configs", relative), NO_FILES)
    torch.manual_seed(0)
    model = build_model(cfg)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert not any(n.startswith("clip.") for n in trainable)  # CLIP stays frozen
    assert any("prompt_learner" in n for n in trainable)  # no PROMPT_CHECKPOINT: the prompts train
    if cfg.MODEL.META_ARCHITECTURE == "ProposalClipClassifier":
        assert all("prompt_learner" in n for n in trainable)  # stage 1 trains the prompt alone


# bytedance/FreeSeg, as its files write them. mask2former/data/datasets/register_coco_panoptic.py: the "id - 1" of
# the classes its coco_2017_val_panoptic_with_sem_seg flags unseen (trainable_flag 0); 123 (COCO-Stuff's grass) is
# not among the 133 panoptic classes.
PANOPTIC_UNSEEN_ID_MINUS_1 = [20, 24, 32, 33, 40, 56, 86, 123, 148]
# mask2former/evaluation/panoptic_seg_evaluation.py, GeneralizedPanopticEvaluator.evaluate: its novel dataset ids.
PQ_NOVEL_IDS = [21, 25, 33, 34, 41, 57, 87, 100, 106, 124, 145, 148, 149, 169, 172]
# mask2former/evaluation/instance_seg_evaluation.py, COCOEvaluator._derive_coco_results: its COCO novel names.
AP_NOVEL_NAMES = {"cow", "giraffe", "frisbee", "suitcase", "skateboard", "carrot", "scissors"}
COCO_STAGE2 = [
    "coco-stuff-164k/open-vocabulary/freeseg/freeseg_R50_alltask_bs32_60k.yaml",
    "coco-stuff-164k/open-vocabulary/freeseg/freeseg_R101c_alltask_bs32_60k.yaml",
]


@pytest.mark.parametrize("relative", COCO_STAGE2)
def test_coco_stage2_tests_on_freesegs_panoptic_set_with_its_flags(relative):
    cfg = setup_cfg(os.path.join(REPO, "configs", relative), NO_FILES)
    assert list(cfg.DATASETS.TEST) == ["coco_2017_val_panoptic_with_sem_seg_open_vocab", "coco_2017_test_full_task"]
    panoptic = MetadataCatalog.get(cfg.DATASETS.TEST[0])
    names = panoptic.stuff_classes
    assert len(names) == 133 and len(panoptic.thing_classes) == 80 and panoptic.evaluator_type == "coco_panoptic_seg"
    dataset_id = {index: cat_id for cat_id, index in panoptic.stuff_dataset_id_to_contiguous_id.items()}
    # The model's flags: FreeSeg's trainable_flag, its 9 listed ids of which 8 exist among the 133.
    expected = [0 if dataset_id[i] - 1 in PANOPTIC_UNSEEN_ID_MINUS_1 else 1 for i in range(133)]
    assert panoptic.trainable_flag == expected
    unseen = [names[i] for i in range(133) if not expected[i]]
    assert unseen == ["cow", "giraffe", "suitcase", "frisbee", "skateboard", "carrot", "scissors", "road"]
    # The metrics' flags: FreeSeg's panoptic evaluator's novel ids present among the 133 (11), whose things are its
    # instance evaluator's 7 novel names.
    metric_unseen = [i for i in range(133) if dataset_id[i] in PQ_NOVEL_IDS]
    assert panoptic.evaluation_flag == [0 if i in metric_unseen else 1 for i in range(133)]
    assert len(metric_unseen) == 11 and {"cardboard", "playingfield", "river"} <= {names[i] for i in metric_unseen}
    assert {names[i] for i in metric_unseen if dataset_id[i] in panoptic.thing_dataset_id_to_contiguous_id} == (
        AP_NOVEL_NAMES
    )
    assert panoptic.get("evaluation_set") is None  # FreeSeg reports no semantic subsets on this set
    # The second set: the 171 classes with the 15 unseen and FreeSeg's semantic evaluation_set.
    stuff = MetadataCatalog.get(cfg.DATASETS.TEST[1])
    assert len(stuff.stuff_classes) == 171 and stuff.trainable_flag.count(0) == 15
    assert stuff.evaluation_set["base"] == [i for i, f in enumerate(stuff.trainable_flag) if f]


def test_ade20k_sets_use_freesegs_class_names():
    """FreeSeg prompts CLIP with the names of its ADE20K table (register_ade20k_all_data.py, stripped)."""
    for name in ("ade20k_all_val", "ade20k_all_train_base", "ade20k_all_val_classification"):
        names = MetadataCatalog.get(name).stuff_classes
        assert {"road, route", "window", "chest of drawers, chest, bureau, dresser"} <= set(names)
        assert not {"road", "windowpane", "chest of drawers"} & set(names)  # the short names of meta/ade20k_150.json
    val = MetadataCatalog.get("ade20k_all_val")
    assert val.stuff_classes[8] == "window" and val.stuff_classes[6] == "road, route"  # FreeSeg's "window " stripped
    assert [val.stuff_classes[i] for i, f in enumerate(val.trainable_flag) if not f] == [
        "grass", "table", "armchair", "tub", "fireplace", "river", "computer", "towel", "tv",
        "buffet, counter, sideboard", "basket, handbasket", "lake", "traffic light", "monitor", "flag",
    ]  # fmt: skip


def test_stage1_tasks_are_the_ones_freeseg_trains_with():
    """FreeSeg's ADE20K stage 1 lists three tasks (its records name none: the semantic prompt trains), VOC's only the
    semantic one; COCO's trains on full-task records, whose tasks its config must list."""
    for relative, tasks in (("ade20k/open-vocabulary/freeseg/freeseg_learn_prompt_bs32_16k.yaml", 3),
                            ("pascal-voc/open-vocabulary/freeseg/freeseg_learn_prompt_bs32_3200.yaml", 1),
                            ("coco-stuff-164k/open-vocabulary/freeseg/freeseg_learn_prompt_bs32_16k.yaml",
                             3)):  # fmt: skip
        cfg = setup_cfg(os.path.join(REPO, "configs", relative), NO_FILES)
        assert len(cfg.INPUT.TASK_NAME) == tasks and cfg.INPUT.TASK_NAME[0] == "semantic segmentation."
