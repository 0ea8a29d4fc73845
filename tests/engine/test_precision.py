"""SOLVER.ALLOW_TF32: which GPUs get TF32, that both cuBLAS and cuDNN flags are set, the start-up log line, and that
the trainer applies it (CPU only: the CUDA capability is faked)."""

import logging

import pytest
import torch

from freemask.config import get_cfg
from freemask.engine import precision

LOG = "freemask.engine.precision"


@pytest.fixture
def flags(monkeypatch):
    """Restore torch's TF32 flags after each test and fake an H200 (compute capability 9.0)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def tf32_flags():
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


def test_default_is_on():
    assert get_cfg().SOLVER.ALLOW_TF32 is True


def test_on_for_ampere_and_later_and_logged(flags, caplog):
    caplog.set_level(logging.INFO, logger=LOG)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    assert precision.apply_tf32(True, "cuda") is True
    assert tf32_flags() == (True, True)
    (line,) = [r.getMessage() for r in caplog.records if r.name == LOG]
    assert line.startswith("TF32: on (SOLVER.ALLOW_TF32 True on NVIDIA H200, compute capability 9.0")


def test_off_by_config_also_turns_off_cudnn(flags, caplog):
    caplog.set_level(logging.INFO, logger=LOG)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    assert precision.apply_tf32(False, "cuda:0") is False
    assert tf32_flags() == (False, False)
    assert "TF32: off (SOLVER.ALLOW_TF32 False" in caplog.text


def test_off_before_ampere(flags, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger=LOG)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))
    torch.backends.cuda.matmul.allow_tf32 = True
    assert precision.apply_tf32(True, "cuda") is False
    assert tf32_flags() == (False, False)
    assert "TF32: off (NVIDIA H200 has compute capability 7.0; TF32 needs 8.0 (Ampere) or later)" in caplog.text


def test_cpu_leaves_the_flags_alone(flags, caplog):
    caplog.set_level(logging.INFO, logger=LOG)
    before = tf32_flags()
    assert precision.apply_tf32(True, "cpu") is False
    assert tf32_flags() == before
    assert "TF32: off (MODEL.DEVICE is cpu" in caplog.text


def test_trainer_applies_the_key_at_start(monkeypatch, repo_root):
    from freemask.engine.trainer import Trainer

    calls = []
    monkeypatch.setattr("freemask.engine.trainer.apply_tf32", lambda allow, device: calls.append((allow, device)))
    cfg = get_cfg()
    cfg.merge_from_file(str(repo_root / "configs" / "toy" / "semantic-segmentation" / "mask2former_R18_toy.yaml"))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "SOLVER.ALLOW_TF32", "False", "OUTPUT_DIR", "/tmp/h-msda/tf32"])
    Trainer(cfg)
    assert calls == [(False, "cpu")]
