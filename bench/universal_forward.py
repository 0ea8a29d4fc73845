#!/usr/bin/env python
"""A real CPU forward of every shipped panoptic / instance Mask2Former config at its real test input size.

The test suite runs two of them (tests/configs/test_universal_configs.py: a Swin-L forward alone takes about a minute
and 5.5 GB); this runs all, random weights, one image, post-processing included, and prints one row per config:
input and output size, seconds, peak memory of the process, and what the post-processing returned.

    python bench/universal_forward.py [--threads 1] [--only swin_tiny]
"""

import argparse
import glob
import os
import resource
import sys
import time

import torch
from tabulate import tabulate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from freemask.config import get_cfg  # noqa: E402
from freemask.data import MetadataCatalog  # noqa: E402
from freemask.modeling import build_model  # noqa: E402
from freemask.modeling.postprocess import UniversalPostprocess  # noqa: E402

# Test input (image at the test resize) and original size of a typical image of each dataset.
SIZES = {"coco": ((800, 1067), (480, 640)), "ade20k": ((640, 853), (512, 683))}
UNIVERSAL_TASKS = ("panoptic-segmentation", "instance-segmentation")  # the semantic folders hold other recipes


def forward(path: str) -> list:
    cfg = get_cfg()
    cfg.merge_from_file(path)
    cfg.merge_from_list(["MODEL.BACKBONE.PRETRAINED", "", "MODEL.DEVICE", "cpu"])
    dataset = os.path.relpath(path, os.path.join(REPO, "configs")).split(os.sep)[0]
    size, (height, width) = SIZES[dataset]
    postprocess = UniversalPostprocess.from_config(cfg, MetadataCatalog.get(cfg.DATASETS.TEST[0]))
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    image = torch.randint(0, 256, (3, *size), dtype=torch.uint8)
    start = time.perf_counter()
    with torch.no_grad():
        (output,) = model([{"image": image, "height": height, "width": width}], postprocess=postprocess)
    seconds = time.perf_counter() - start
    shapes = []
    if "sem_seg" in output:
        shapes.append(f"sem_seg {tuple(output['sem_seg'].shape)}")
    if "panoptic_seg" in output:
        ids, segments = output["panoptic_seg"]
        shapes.append(f"panoptic {tuple(ids.shape)} {len(segments)} segments")
    if "instances" in output:
        shapes.append(f"instances {tuple(output['instances']['pred_masks'].shape)}")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rel = os.path.relpath(path, REPO)
    return [rel, f"{size[0]}x{size[1]} -> {height}x{width}", f"{seconds:.1f}", f"{peak_mib:.0f}", "; ".join(shapes)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--only", default="", help="run only configs whose path contains this text")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    patterns = [os.path.join(REPO, "configs", "*", task, "**", "maskformer2_*.yaml") for task in UNIVERSAL_TASKS]
    paths = sorted(p for pattern in patterns for p in glob.glob(pattern, recursive=True) if args.only in p)
    rows = []
    for path in paths:
        rows.append(forward(path))
        print(" | ".join(rows[-1]), flush=True)
    print(f"\ntorch {torch.__version__}, {args.threads} threads, {os.cpu_count()} cores")
    print(tabulate(rows, headers=["config", "input -> output", "forward s", "process peak RSS MiB so far", "outputs"]))


if __name__ == "__main__":
    main()
