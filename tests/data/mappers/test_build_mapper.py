"""INPUT.DATASET_MAPPER_NAME picks the loaders' mapper by Mask2Former's names; test batches of the panoptic and
instance toy splits carry what the evaluators read."""

import pytest
import torch

from freemask.config import ConfigError, get_cfg
from freemask.data.loading.build import build_test_loader, build_train_loader
from freemask.data.mappers.all_task import AllTaskDatasetMapper
from freemask.data.mappers.binary import BinarySemanticMapper
from freemask.data.mappers.build import MAPPERS, build_mapper
from freemask.data.mappers.instance import InstanceDatasetMapper
from freemask.data.mappers.semantic import SemSegDatasetMapper


def _cfg(name="mask_former_semantic", **opts):
    cfg = get_cfg()
    cfg.INPUT.DATASET_MAPPER_NAME = name
    cfg.DATALOADER.NUM_WORKERS = 0
    for key, value in opts.items():
        node = cfg
        *parents, leaf = key.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return cfg


@pytest.mark.parametrize(
    "name,kind,recipe",
    [
        ("mask_former_semantic", SemSegDatasetMapper, None),
        ("mask_former_panoptic", InstanceDatasetMapper, "semantic"),
        ("mask_former_instance", InstanceDatasetMapper, "semantic"),
        ("coco_panoptic_lsj", InstanceDatasetMapper, "lsj"),
        ("coco_instance_lsj", InstanceDatasetMapper, "lsj"),
        ("open_vocab_all_task", AllTaskDatasetMapper, "semantic"),
        ("mask_former_binary_semantic", BinarySemanticMapper, None),
    ],
)
@pytest.mark.parametrize("is_train", [True, False])
def test_names_build_their_mapper(name, kind, recipe, is_train):
    # a stage-1 config names its crop size (FreeSeg's [224, 244]); the default's 16 sizes are a semantic recipe's
    opts = {"INPUT__MIN_SIZE_TRAIN": (224, 244)} if kind is BinarySemanticMapper else {}
    mapper = build_mapper(_cfg(name, **opts), is_train)
    assert type(mapper) is kind and mapper.is_train == is_train
    if recipe:
        assert mapper.recipe == recipe
    assert set(MAPPERS) == {
        "mask_former_semantic",
        "mask_former_panoptic",
        "mask_former_instance",
        "coco_panoptic_lsj",
        "coco_instance_lsj",
        "open_vocab_all_task",
        "mask_former_binary_semantic",
    }


def test_default_is_the_semantic_mapper():
    assert get_cfg().INPUT.DATASET_MAPPER_NAME == "mask_former_semantic"


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="INPUT.DATASET_MAPPER_NAME 'detr'.*coco_panoptic_lsj"):
        build_mapper(_cfg("detr"), True)


@pytest.fixture
def toy(toy_datasets, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", toy_datasets)


@pytest.mark.parametrize(
    "split,name", [("toy_panoptic_val", "mask_former_panoptic"), ("toy_instance_val", "mask_former_instance")]
)
def test_test_batches_carry_what_the_evaluators_read(toy, split, name):
    cfg = _cfg(name, INPUT__MIN_SIZE_TEST=48, TEST__IMS_PER_BATCH=2)
    batch = next(iter(build_test_loader(cfg, split)))
    assert len(batch) == 2
    for x in batch:
        assert {"file_name", "image_id", "height", "width", "image"} <= set(x)
        assert x["image"].shape[-2:] == (48, 48) and (x["height"], x["width"]) == (64, 64)
        if split.startswith("toy_panoptic"):  # the panoptic split names semantic maps: semantic evaluation too
            assert x["sem_seg"].shape == (64, 64) and x["sem_seg"].dtype == torch.int64


@pytest.mark.parametrize(
    "split,name", [("toy_panoptic_train", "coco_panoptic_lsj"), ("toy_instance_train", "mask_former_instance")]
)
def test_train_batches_carry_instance_targets(toy, split, name):
    cfg = _cfg(
        name,
        DATASETS__TRAIN=(split,),
        SOLVER__IMS_PER_BATCH=2,
        INPUT__IMAGE_SIZE=64,
        INPUT__CROP__SIZE=[64, 64],
        INPUT__MIN_SIZE_TRAIN=[64],
    )
    batch = next(iter(build_train_loader(cfg)))
    assert len(batch) == 2
    for x in batch:
        assert x["image"].shape[-2:] == (64, 64)
        assert x["instances"]["gt_masks"].shape[1:] == (64, 64)


def test_test_ims_per_batch_must_be_positive(toy):
    with pytest.raises(ConfigError, match="TEST.IMS_PER_BATCH"):
        build_test_loader(_cfg(TEST__IMS_PER_BATCH=0), "toy_sem_seg_val")
