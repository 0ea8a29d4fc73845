"""The environment line at start and the CPU oversubscription warning (issue 18, point 14)."""

import argparse
import logging

import pytest
import torch

from freemask.config import get_cfg
from freemask.engine.defaults import default_setup
from freemask.utils import collect_env


@pytest.fixture
def freemask_records():
    """Records of the ``freemask`` loggers, whether or not setup_logger() stopped their propagation earlier."""
    records = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append
    logger = logging.getLogger("freemask")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def test_default_setup_logs_one_environment_line(tmp_path, freemask_records):
    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(tmp_path / "out")
    cfg.MODEL.DEVICE = "cpu"
    default_setup(cfg, argparse.Namespace(num_gpus=1))
    lines = [r.getMessage() for r in freemask_records if r.getMessage().startswith("Environment: ")]
    assert len(lines) == 1
    line = lines[0]
    for key in ("torch ", "torchvision ", "timm ", "device cpu", "CUDA ", "cuDNN ", "torch threads ", "world size 1"):
        assert key in line, (key, line)
    assert f"torch {torch.__version__.split('+')[0]}" in line


def test_num_gpus_on_cpu_warns_when_processes_times_threads_exceed_the_cores(monkeypatch, freemask_records):
    monkeypatch.setattr(collect_env.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(collect_env.torch, "get_num_threads", lambda: 4)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    collect_env.log_environment("cpu", num_processes_per_machine=2)
    warnings = [r.getMessage() for r in freemask_records if r.levelno == logging.WARNING]
    assert warnings == [
        "--num-gpus 2 on a CPU machine: 2 processes x 4 torch threads = 8 threads on 4 cores, so they compete for "
        "cores and each step is slower; set OMP_NUM_THREADS=2 (cores / processes)"
    ]
    freemask_records.clear()
    monkeypatch.setattr(collect_env.torch, "get_num_threads", lambda: 2)
    collect_env.log_environment("cpu", num_processes_per_machine=2)  # 2 x 2 = 4 cores: fine
    assert not [r for r in freemask_records if r.levelno == logging.WARNING]


def test_more_processes_than_cores_suggests_fewer_processes():
    message = collect_env.oversubscription_warning(processes=3, threads=1, cores=2)
    assert message.endswith("use at most --num-gpus 2 with OMP_NUM_THREADS=1")
    assert collect_env.oversubscription_warning(1, 2, 2) is None


def test_cudnn_version_is_decoded_for_both_encodings(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 8902)
    assert collect_env._cudnn_version() == "8.9.2"
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 90100)
    assert collect_env._cudnn_version() == "9.1.0"
