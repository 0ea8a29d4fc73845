"""FreeMask's synthetic pairs join FreeSeg's stage 2 through DATASETS.TRAIN_SYN: the toy's seen-class synthetic split
(written by the toy generator) passes ``training_vocabulary`` next to ``toy_ov_train_base``, builds the joint
loader, and one training step runs; the full-vocabulary synthetic split is refused."""

import pytest
import torch

from freemask.config import ConfigError, get_cfg
from freemask.data.loading.build import build_train_loader
from freemask.modeling import build_model
from freemask.modeling.meta_arch.open_vocabulary import training_vocabulary
from freemask.toy.generator import ToyParams, generate_toy_dataset

PARAMS = ToyParams(num_train=4, num_val=2, num_seeds=1, height=64, width=80, seed=3)
SEEN = ("sky", "grass", "building", "car")


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("datasets"))
    assert generate_toy_dataset(root, PARAMS)
    return root


def joint_cfg(repo_root, syn_split):
    cfg = get_cfg()
    cfg.merge_from_file(str(repo_root / "configs" / "toy" / "open-vocabulary" / "freeseg_R18_toy_alltask.yaml"))
    cfg.merge_from_list(
        [
            *("DATASETS.TRAIN", ("toy_ov_train_base",), "DATASETS.TRAIN_SYN", (syn_split,)),
            *("DATALOADER.SYN_RATIO", 0.5, "DATALOADER.NUM_WORKERS", 0, "SOLVER.IMS_PER_BATCH", 2),
            *("INPUT.MIN_SIZE_TRAIN", (64,), "INPUT.CROP.SIZE", [64, 64]),
            *("MODEL.MASK_FORMER.DEC_LAYERS", 2, "MODEL.MASK_FORMER.TRAIN_NUM_POINTS", 256),
        ]
    )
    return cfg


def test_the_seen_class_synthetic_split_trains_next_to_the_real_base_split(repo_root, toy_root, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", toy_root)
    cfg = joint_cfg(repo_root, "toy_syn_sem_seg_train_base")
    assert training_vocabulary(cfg).names == SEEN
    batch = next(iter(build_train_loader(cfg)))
    assert sorted("instances" in x for x in batch) == [False, True], "one real and one synthetic sample"
    synthetic = next(x for x in batch if "instances" not in x)
    labels = set(synthetic["sem_seg"].unique().tolist())
    assert labels - {255} and labels <= {0, 1, 2, 3, 255}, labels
    torch.manual_seed(0)
    model = build_model(cfg).train()
    losses = model(batch)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()


def test_the_full_vocabulary_synthetic_split_is_refused(repo_root):
    cfg = joint_cfg(repo_root, "toy_syn_sem_seg_train")
    with pytest.raises(ConfigError, match="toy_syn_sem_seg_train names the classes"):
        training_vocabulary(cfg)
