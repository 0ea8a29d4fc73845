import os

import pytest
import torch

from freemask.config import get_cfg
from freemask.engine import Trainer
from freemask.engine.trainer import iteration_seed


def toy_cfg(output_dir):
    cfg = get_cfg()
    cfg.merge_from_file(
        os.path.join(os.path.dirname(__file__), "..", "..", "configs", "toy", "semantic_fpn_R18_toy.yaml")
    )
    cfg.merge_from_list(
        [
            "MODEL.DEVICE",
            "cpu",
            "SOLVER.IMS_PER_BATCH",
            "2",
            "SOLVER.MAX_ITER",
            "6",
            "SOLVER.CHECKPOINT_PERIOD",
            "2",
            "DATALOADER.NUM_WORKERS",
            "0",
            "DATASETS.TEST",
            "()",
            "MODEL.SEM_SEG_HEAD.CONVS_DIM",
            "32",
            "MODEL.SEM_SEG_HEAD.HEAD_DIM",
            "32",
            "OUTPUT_DIR",
            str(output_dir),
            "LOG_PERIOD",
            "1",
        ]
    )
    return cfg


def test_nan_loss_stops_training_and_keeps_last_good_checkpoint(toy_datasets, tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", toy_datasets)
    trainer = Trainer(toy_cfg(tmp_path))
    forward = trainer.model.forward
    calls = []

    def nan_at_iteration_three(batch):
        calls.append(1)
        losses = forward(batch)
        return {k: v * float("nan") for k, v in losses.items()} if len(calls) == 4 else losses

    monkeypatch.setattr(trainer.model, "forward", nan_at_iteration_three)
    with pytest.raises(FloatingPointError, match="at iteration 3") as error:
        trainer.train()
    assert str(tmp_path) in str(error.value) and "\n" not in str(error.value)
    assert open(tmp_path / "last_checkpoint").read() == "model_0000001.pth"
    saved = torch.load(tmp_path / "model_0000001.pth", weights_only=True)
    assert saved["iteration"] == 1 and not (tmp_path / "model_0000003.pth").exists()
    assert all(torch.isfinite(v).all() for v in saved["model"].values() if v.is_floating_point())


def test_iteration_seeds_differ_by_iteration_and_rank():
    seeds = {iteration_seed(42, it, rank) for it in range(100) for rank in range(8)}
    assert len(seeds) == 800


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_amp_training_steps(toy_datasets, tmp_path, monkeypatch, dtype):
    monkeypatch.setenv("DETECTRON2_DATASETS", toy_datasets)
    cfg = toy_cfg(tmp_path)
    cfg.merge_from_list(["SOLVER.AMP.ENABLED", "True", "SOLVER.AMP.DTYPE", dtype, "SOLVER.MAX_ITER", "1"])
    trainer = Trainer(cfg)
    assert trainer.scaler.is_enabled() == (dtype == "float16")  # bf16 needs no loss scaling
    logits_dtypes = []
    trainer.model.sem_seg_head.predictor.register_forward_hook(lambda m, i, out: logits_dtypes.append(out.dtype))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    after = trainer.model.state_dict()
    assert logits_dtypes and set(logits_dtypes) == {getattr(torch, dtype)}  # the forward ran under autocast
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert open(tmp_path / "last_checkpoint").read() == "model_final.pth"
    if dtype == "float16":
        assert "grad_scaler" in torch.load(tmp_path / "model_final.pth", weights_only=True)
