"""The toy Mask2Former at test size and a batch it can learn (imported by conftest.py only)."""

import pathlib
from typing import Dict, List

import torch

from freemask.config import CfgNode, get_cfg


def tiny_cfg(repo_root: pathlib.Path) -> CfgNode:
    """configs/toy/semantic-segmentation/mask2former_R18_toy.yaml on the CPU with 4 classes and 256 sampled points."""
    cfg = get_cfg()
    cfg.merge_from_file(str(repo_root / "configs" / "toy" / "semantic-segmentation" / "mask2former_R18_toy.yaml"))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "4"])
    cfg.merge_from_list(["MODEL.MASK_FORMER.TRAIN_NUM_POINTS", "256"])
    return cfg


def striped_batch(n: int = 2, size: int = 64) -> List[Dict[str, torch.Tensor]]:
    """Images whose colour says the class: 4 vertical stripes, class k painted with value 60 * k."""
    label = (torch.arange(size) * 4 // size).expand(size, size)
    image = (label * 60).to(torch.uint8).expand(3, size, size)
    return [{"image": image.clone(), "sem_seg": label.clone(), "height": size, "width": size} for _ in range(n)]
