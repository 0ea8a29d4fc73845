"""Every shipped FreeSeg config: it loads, names registered datasets and a known mapper, and trains as many classes
as its training split names (the class head has no fixed size, the criterion does); the COCO stage-2 config and a
R101c ADE20K and a stage-1 config build their models at full size (random ViT-B/16 CLIP, no weights read)."""

import glob
import os

import pytest
import torch

from freemask.data import DatasetCatalog, MetadataCatalog
from freemask.data.mappers import MAPPERS
from freemask.engine.defaults import setup_cfg
from freemask.modeling import META_ARCH_REGISTRY, build_model

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = sorted(p for p in glob.glob(os.path.join(REPO, "configs", "**", "freeseg*.yaml"), recursive=True)
                 if "/common/" not in p)  # the shared recipes name no datasets
NO_FILES = ["MODEL.CLIP_ADAPTER.CLIP_WEIGHTS", "", "MODEL.BACKBONE.PRETRAINED", "", "MODEL.DEVICE", "cpu"]


def test_the_three_settings_and_the_toy_are_shipped():
    folders = {os.path.relpath(os.path.dirname(path), os.path.join(REPO, "configs")) for path in CONFIGS}
    assert {"coco-stuff-164k-156/freeseg", "ade20k-135/freeseg", "voc-11k-15/freeseg", "toy"} <= folders
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
    test = MetadataCatalog.get(cfg.DATASETS.TEST[0])
    assert set(train.stuff_classes) <= set(test.stuff_classes)  # the test vocabulary holds the seen classes
    if cfg.MODEL.META_ARCHITECTURE == "ProposalClipClassifier":
        assert test.evaluator_type == "classification" and cfg.DATASETS.SAMPLE_PER_CLASS > 0
        return
    assert 0 in test.trainable_flag and 1 in test.trainable_flag  # seen and unseen classes scored
    if "/toy/" not in path:  # the toy shrinks every size
        assert cfg.MODEL.MASK_FORMER.DEC_LAYERS == 10  # FreeSeg's OpenTransformerPredictor runs 10 layers
    assert cfg.MODEL.SEM_SEG_HEAD.EMB_SIZE == cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM
    tasks = {"instance segmentation.", "panoptic segmentation."}
    if tasks <= set(cfg.INPUT.TASK_NAME):
        assert cfg.INPUT.DATASET_MAPPER_NAME == "open_vocab_all_task"


@pytest.mark.parametrize(
    "relative", ["coco-stuff-164k-156/freeseg/freeseg_R50_alltask_bs32_60k.yaml",
                 "ade20k-135/freeseg/freeseg_R101c_alltask_bs32_60k.yaml",
                 "voc-11k-15/freeseg/freeseg_learn_prompt_bs32_3200.yaml"],
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
