"""Per-process set-up shared by train_net.py and the tools (detectron2's conventions)."""

import argparse
import logging
import os
import random
import sys
from typing import List

import numpy as np
import torch

from ..config import CfgNode, ConfigError, get_cfg, resolve_device
from ..data.datasets import register_custom_from_config
from ..utils import comm
from ..utils.atomic import atomic_write_text
from ..utils.collect_env import log_environment
from ..utils.logger import setup_logger


def setup_cfg(config_file: str, opts: List[str]) -> CfgNode:
    """Defaults, then the YAML file, then the overrides; frozen. Raises ConfigError on any bad key or value."""
    cfg = get_cfg()
    if config_file:
        cfg.merge_from_file(config_file)
    cfg.merge_from_list(opts)
    cfg.freeze()
    return cfg


# Files every run into OUTPUT_DIR appends to rather than replaces.
APPENDED_FILES = ("log.txt", "metrics.json")


def default_setup(cfg: CfgNode, args: argparse.Namespace) -> CfgNode:
    """Create OUTPUT_DIR, set up logging, save the merged config, fix the seed. Returns the config with SEED set.

    The config goes to ``config.yaml``, or ``config_eval.yaml`` with ``--eval-only``, so evaluating a training
    folder keeps the record of how it was trained."""
    rank = comm.get_rank()
    earlier = [n for n in APPENDED_FILES if os.path.isfile(os.path.join(cfg.OUTPUT_DIR, n))]
    if comm.is_main_process():
        os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    comm.synchronize()
    logger = setup_logger(cfg.OUTPUT_DIR, rank)
    logger.info("Rank %d of %d; command line: %s", rank, comm.get_world_size(), " ".join(sys.argv))
    log_environment(str(resolve_device(cfg)), getattr(args, "num_gpus", 1))
    if earlier and comm.is_main_process():
        logger.info(
            "OUTPUT_DIR %s already holds %s of an earlier run: this run appends to %s",
            cfg.OUTPUT_DIR,
            " and ".join(earlier),
            "them" if len(earlier) > 1 else "it",
        )
    register_custom_dataset(cfg)
    cfg = cfg.clone()
    cfg.defrost()
    cfg.SEED = comm.shared_seed(cfg.SEED)
    cfg.freeze()
    seed_everything(cfg.SEED + rank)
    if comm.is_main_process():
        name = "config_eval.yaml" if getattr(args, "eval_only", False) else "config.yaml"
        path = os.path.join(cfg.OUTPUT_DIR, name)
        atomic_write_text(path, cfg.dump())
        logger.info("Full config saved to %s", path)
    logging.getLogger("freemask").info("Seed: %d", cfg.SEED)
    return cfg


def register_custom_dataset(cfg: CfgNode) -> None:
    """Register DATASETS.CUSTOM (if named) in this process, checking its ignore label matches the model's."""
    custom = cfg.DATASETS.CUSTOM
    if custom.NAME and custom.IGNORE_LABEL != cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE:
        raise ConfigError(
            f"DATASETS.CUSTOM.IGNORE_LABEL ({custom.IGNORE_LABEL}) differs from MODEL.SEM_SEG_HEAD.IGNORE_VALUE "
            f"({cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE}); the loader pads and the loss ignores the latter: set both equal"
        )
    names = register_custom_from_config(cfg)
    if names:
        logging.getLogger("freemask").info("Registered custom datasets: %s", ", ".join(names))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
