"""Command-line arguments and per-process set-up shared by train_net.py and the tools (detectron2's conventions)."""

import argparse
import logging
import os
import random
import sys
from typing import List, Optional

import numpy as np
import torch

from ..config import CfgNode, ConfigError, get_cfg
from ..data.datasets import register_custom_from_config
from ..utils import comm
from ..utils.collect_env import log_environment
from ..utils.logger import setup_logger


def default_argument_parser(description: Optional[str] = None) -> argparse.ArgumentParser:
    """The detectron2 flags: --config-file, --resume, --eval-only, --num-gpus, --num-machines, --machine-rank,
    --dist-url, then any number of trailing ``KEY VALUE`` config overrides."""
    parser = argparse.ArgumentParser(
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Trailing KEY VALUE pairs override the config, e.g. SOLVER.MAX_ITER 1000 MODEL.WEIGHTS ckpt.pth",
    )
    parser.add_argument("--config-file", default="", metavar="FILE", help="path to a YAML config")
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/last_checkpoint if it exists")
    parser.add_argument("--eval-only", action="store_true", help="evaluate MODEL.WEIGHTS on DATASETS.TEST and exit")
    parser.add_argument("--num-gpus", type=int, default=1, help="processes per machine (one per GPU; gloo on CPU)")
    parser.add_argument("--num-machines", type=int, default=1)
    parser.add_argument("--machine-rank", type=int, default=0, help="rank of this machine (0 .. num-machines - 1)")
    parser.add_argument(
        "--dist-url", default="auto", help="rendezvous address, e.g. tcp://host:port; 'auto' picks a free local port"
    )
    parser.add_argument("opts", default=[], nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    return parser


def setup_cfg(config_file: str, opts: List[str]) -> CfgNode:
    """Defaults, then the YAML file, then the overrides; frozen. Raises ConfigError on any bad key or value."""
    cfg = get_cfg()
    if config_file:
        cfg.merge_from_file(config_file)
    cfg.merge_from_list(opts)
    cfg.freeze()
    return cfg


def default_setup(cfg: CfgNode, args: argparse.Namespace) -> CfgNode:
    """Create OUTPUT_DIR, set up logging, save the merged config, fix the seed. Returns the config with SEED set."""
    rank = comm.get_rank()
    if comm.is_main_process():
        os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    comm.synchronize()
    logger = setup_logger(cfg.OUTPUT_DIR, rank)
    logger.info("Rank %d of %d; command line: %s", rank, comm.get_world_size(), " ".join(sys.argv))
    log_environment(cfg.MODEL.DEVICE, getattr(args, "num_gpus", 1))
    register_custom_dataset(cfg)
    cfg = cfg.clone()
    cfg.defrost()
    cfg.SEED = comm.shared_seed(cfg.SEED)
    cfg.freeze()
    seed_everything(cfg.SEED + rank)
    if comm.is_main_process():
        path = os.path.join(cfg.OUTPUT_DIR, "config.yaml")
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            f.write(cfg.dump())
        os.replace(tmp, path)
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
