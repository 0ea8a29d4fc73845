"""Every result file says which weights (path, sha256) and which config produced it (issue 24, "stale results"):
after training, the final evaluation names model_final.pth; an --eval-only of model M1, then one of M2 killed in the
same folder before its results, leaves M2's config_eval.yaml beside results that still name M1 and M1's config."""

import json
import os
import pathlib

import pytest
import yaml

from freemask.arguments import default_argument_parser
from freemask.commands.train import run_training
from freemask.engine.defaults import default_setup, setup_cfg
from freemask.engine.trainer import Trainer
from freemask.utils.file_hash import file_sha256

REPO = pathlib.Path(__file__).resolve().parents[2]
CONFIG = str(REPO / "configs" / "toy" / "semantic-segmentation" / "semantic_fpn_R18_toy.yaml")
FAST = ["MODEL.DEVICE", "cpu", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "2", "SOLVER.CHECKPOINT_PERIOD", "1",
        "DATALOADER.NUM_WORKERS", "0", "TEST.EVAL_PERIOD", "0", "TEST.VIS_IMAGES", "0", "INPUT.CROP.SIZE", "[64, 64]",
        "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MIN_SIZE_TEST", "64", "MODEL.SEM_SEG_HEAD.CONVS_DIM", "32",
        "MODEL.SEM_SEG_HEAD.HEAD_DIM", "32"]  # fmt: skip


def results(folder):
    with open(os.path.join(folder, "inference", "sem_seg_results.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def trained(toy_datasets, tmp_path_factory):
    """A two-iteration toy training evaluated at its end: two checkpoints (M1 = model_0000000.pth, M2 = final)."""
    out = str(tmp_path_factory.mktemp("trained"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DETECTRON2_DATASETS", toy_datasets)
        cfg = setup_cfg(CONFIG, [*FAST, "OUTPUT_DIR", out])
        trainer = Trainer(cfg)
        trainer.resume_or_load(resume=False)
        trainer.train()
    return out, cfg


def test_the_final_evaluation_names_the_final_checkpoint_and_the_run_config(trained):
    out, cfg = trained
    produced_by = results(out)["produced_by"]
    final = os.path.join(out, "model_final.pth")
    assert produced_by["weights"] == {"path": os.path.abspath(final), "sha256": file_sha256(final)}
    assert produced_by["iteration"] == 1
    assert produced_by["config"]["OUTPUT_DIR"] == out and produced_by["config"]["SOLVER"]["MAX_ITER"] == 2
    assert produced_by["config"] == json.loads(json.dumps(cfg))  # the whole merged config


def test_a_killed_eval_only_of_another_model_leaves_results_that_name_their_own_model(
    trained, toy_datasets, tmp_path, monkeypatch
):
    monkeypatch.setenv("DETECTRON2_DATASETS", toy_datasets)
    out, _ = trained
    m1, m2 = os.path.join(out, "model_0000000.pth"), os.path.join(out, "model_final.pth")
    assert file_sha256(m1) != file_sha256(m2)
    inputs = {m: file_sha256(m) for m in (m1, m2)}
    folder = str(tmp_path / "eval")

    def args(weights):
        return default_argument_parser().parse_args(
            ["--config-file", CONFIG, "--eval-only", *FAST, "OUTPUT_DIR", folder, "MODEL.WEIGHTS", weights]
        )

    run_training(args(m1))
    first = results(folder)
    assert first["produced_by"]["weights"] == {"path": os.path.abspath(m1), "sha256": inputs[m1]}
    assert first["produced_by"]["iteration"] is None
    assert first["produced_by"]["config"]["MODEL"]["WEIGHTS"] == m1

    # M2's run killed after its set-up (config_eval.yaml written), before its results: what the kill leaves.
    second = args(m2)
    default_setup(setup_cfg(second.config_file, second.opts), second)
    with open(os.path.join(folder, "config_eval.yaml")) as f:
        assert yaml.safe_load(f)["MODEL"]["WEIGHTS"] == m2
    stale = results(folder)
    assert stale == first  # untouched, and it says it is M1's
    assert stale["produced_by"]["weights"]["sha256"] == inputs[m1] != inputs[m2]
    assert stale["produced_by"]["config"]["MODEL"]["WEIGHTS"] == m1
    assert {m: file_sha256(m) for m in (m1, m2)} == inputs  # the evaluated weights are never modified
