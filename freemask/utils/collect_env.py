"""The software and hardware a run used, as one log line at start (detectron2's ``collect_env``, condensed).

A result is only comparable with another if both ran the same library versions on the same kind of device; the
line puts that in ``log.txt`` next to the numbers. On a machine without GPUs, ``--num-gpus N`` starts N gloo
processes that each use all cores by default; the warning below names that oversubscription and its fix.
"""

import logging
import os
import platform
from importlib import metadata
from typing import Dict, Optional

import torch

from . import comm

logger = logging.getLogger(__name__)

# Distributions whose versions change results or speed; a missing one is reported as "not installed".
_PACKAGES = ("torch", "torchvision", "timm", "numpy", "opencv-python-headless", "fvcore")


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cudnn_version() -> str:
    """cuDNN as major.minor.patch: torch packs it as M*1000+m*100+p up to cuDNN 8 and M*10000+m*100+p from 9."""
    number = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    if not number:
        return "none"
    major, rest = divmod(number, 10000 if number >= 10000 else 1000)
    return f"{major}.{rest // 100}.{rest % 100}"


def _device(device: str) -> str:
    if torch.device(device).type != "cuda" or not torch.cuda.is_available():
        gpus = "no CUDA GPU visible" if not torch.cuda.is_available() else f"{torch.cuda.device_count()} GPUs unused"
        return f"cpu ({gpus})"
    index = torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(index)
    count = torch.cuda.device_count()
    return f"cuda:{index} {torch.cuda.get_device_name(index)} (sm_{major}{minor}; {count} visible)"


def collect_env_info(device: str = "cpu") -> Dict[str, str]:
    """Versions, device, CUDA/cuDNN, threads and world size of this process, in the order they are logged."""
    info = {"python": platform.python_version()}
    info.update({name.split("-")[0]: _version(name) for name in _PACKAGES})
    info["device"] = _device(device)
    info["CUDA"] = torch.version.cuda or "none (CPU build)"
    info["cuDNN"] = _cudnn_version()
    info["torch threads"] = str(torch.get_num_threads())
    info["CPU cores"] = str(os.cpu_count())
    info["world size"] = str(comm.get_world_size())
    return info


def format_env_info(info: Dict[str, str]) -> str:
    return "Environment: " + ", ".join(f"{key} {value}" for key, value in info.items())


def oversubscription_warning(processes: int, threads: int, cores: Optional[int]) -> Optional[str]:
    """The warning when ``processes`` CPU processes of ``threads`` torch threads each ask for more than ``cores``."""
    if not cores or processes * threads <= cores:
        return None
    if processes < cores:
        fix = f"set OMP_NUM_THREADS={cores // processes} (cores / processes)"
    else:
        fix = f"use at most --num-gpus {cores} with OMP_NUM_THREADS=1"
    return (
        f"--num-gpus {processes} on a CPU machine: {processes} processes x {threads} torch threads = "
        f"{processes * threads} threads on {cores} cores, so they compete for cores and each step is slower; {fix}"
    )


def log_environment(device: str, num_processes_per_machine: int = 1) -> None:
    """Log the environment line; on CPU also warn when the machine's processes oversubscribe its cores.

    ``num_processes_per_machine`` is ``--num-gpus``; under torchrun its ``LOCAL_WORLD_SIZE`` is used instead."""
    logger.info(format_env_info(collect_env_info(device)))
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        return
    processes = int(os.environ.get("LOCAL_WORLD_SIZE", num_processes_per_machine))
    warning = oversubscription_warning(processes, torch.get_num_threads(), os.cpu_count())
    if warning and comm.get_local_rank() == 0:
        logger.warning(warning)
