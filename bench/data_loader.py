#!/usr/bin/env python
"""Training data pipeline throughput: our SemSegDatasetMapper against an MMSegmentation-style float32 reference.

    python bench/data_loader.py                         # defaults: 16 images of 512x683, 160 samples, 2 workers
    python bench/data_loader.py --root /data/bench --num-images 64 --iters 256 --workers 8

Why: the data loader must keep up with the GPUs, and a worker's time is decoding plus augmentation. Both mappers get
the same records, seeds and recipe (the ADE20K 512x512 one of ``freemask/config/defaults.py``); rounds alternate
between them so a busy machine slows both alike. Two figures per pipeline:

* samples/s of one process calling the mapper in a loop, decoding included, OpenCV limited to one thread — what
  one DataLoader worker delivers;
* samples/s of the whole training loader (``build_train_loader`` with DATALOADER.NUM_WORKERS = --workers; the
  reference plugged into the same sampler and ``MapDataset``), after the workers have started.

A second table measures what the label maps' dtype costs on the way from the workers: our loader as it ships them
(uint8) against the same mapper widening them to int64 in the worker (what it did before), and a mapper returning
ready tensors of the crop size with either dtype (the transfer ceiling, no mapping at all).

Images are written once by the toy generator under --root (default: a folder in the temporary directory) and
reused when they are already there with the same parameters.
"""

import argparse
import itertools
import os
import sys
import tempfile
import time
from typing import Callable, Dict, List, Sequence

import cv2
import numpy as np
import torch
from tabulate import tabulate
from torch.utils.data import DataLoader

from freemask.config import CfgNode, get_cfg
from freemask.data import DatasetCatalog
from freemask.data.loading.build import MapDataset, build_train_loader, trivial_batch_collator
from freemask.data.mappers.semantic import SemSegDatasetMapper
from freemask.toy.generator import ToyParams, generate_toy_dataset, parse_size

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_pipeline import ReferenceMapper  # noqa: E402

DATASET = "toy_sem_seg_train"


def prepare_images(root: str, num_images: int, size: Sequence[int]) -> None:
    """Toy images of ``size`` = (h, w) under ``root/toy`` (training split only matters; no synthetic copies)."""
    start = time.perf_counter()
    params = ToyParams(num_train=num_images, num_val=1, num_seeds=0, height=size[0], width=size[1])
    if generate_toy_dataset(root, params):
        print(f"wrote {num_images} images of {size[0]}x{size[1]} to {root}/toy in {time.perf_counter() - start:.1f}s")
    else:
        print(f"reusing the {num_images} images of {size[0]}x{size[1]} in {root}/toy")


def bench_config(workers: int, batch: int) -> CfgNode:
    cfg = get_cfg()
    cfg.DATASETS.TRAIN = [DATASET]
    cfg.DATASETS.TRAIN_SYN = []
    cfg.DATALOADER.NUM_WORKERS = workers
    cfg.SOLVER.IMS_PER_BATCH = batch
    cfg.SEED = 0
    return cfg


def mapper_rates(mappers: Dict[str, Callable], records: List[dict], samples: int, rounds: int = 8) -> Dict[str, float]:
    """Samples/s of each mapper in this process; sample ``i`` is record ``i % n`` with seed ``i`` for every mapper."""
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # one DataLoader worker's view: parallelism comes from the workers
    try:
        for mapper in mappers.values():  # warm-up: imports, OpenCV and allocator first-use costs
            mapper(records[0], np.random.default_rng(0))
        elapsed = dict.fromkeys(mappers, 0.0)
        per_round = max(1, samples // rounds)
        for r in range(rounds):
            for name, mapper in mappers.items():
                start = time.perf_counter()
                for i in range(r * per_round, (r + 1) * per_round):
                    mapper(records[i % len(records)], np.random.default_rng(i))
                elapsed[name] += time.perf_counter() - start
    finally:
        cv2.setNumThreads(threads)
    return {name: rounds * per_round / seconds for name, seconds in elapsed.items()}


def loader_rates(make_loaders: Dict[str, Callable[[], DataLoader]], batches: int, rounds: int = 2) -> Dict[str, float]:
    """Samples/s of each loader over ``rounds`` alternating runs of ``batches`` batches, one loader alive at a time.

    Each run builds a fresh loader and is timed from its ``1 + 2 * workers``-th batch on: the batches before it were
    made during worker start-up, while the main process waited for the first one (two prefetched per worker), and
    would inflate the rate.
    """
    counts, elapsed = dict.fromkeys(make_loaders, 0), dict.fromkeys(make_loaders, 0.0)
    for _ in range(rounds):
        for name, make_loader in make_loaders.items():
            loader = make_loader()
            iterator = iter(loader)
            for _warm_up in range(1 + 2 * loader.num_workers):
                next(iterator)
            start = time.perf_counter()
            counts[name] += sum(len(batch) for batch in itertools.islice(iterator, batches))
            elapsed[name] += time.perf_counter() - start
            del loader, iterator  # the persistent workers exit with the last reference to the iterator
    return {name: counts[name] / elapsed[name] for name in make_loaders}


class ReadyTensors:
    """A mapper returning ready training tensors of the crop size: the loader's transfer cost with no mapping."""

    def __init__(self, crop_size: Sequence[int], label_dtype: torch.dtype) -> None:
        self.crop_size = tuple(crop_size)
        self.label_dtype = label_dtype

    def __call__(self, record: dict, rng: np.random.Generator) -> dict:
        return {
            "file_name": record["file_name"],
            "image": torch.zeros((3, *self.crop_size), dtype=torch.uint8),
            "sem_seg": torch.zeros(self.crop_size, dtype=self.label_dtype),
        }


class WidenLabels:
    """Our mapper as it shipped label maps before they became compact: ``sem_seg`` widened to int64 in the worker."""

    def __init__(self, mapper: Callable) -> None:
        self.mapper = mapper

    def __call__(self, record: dict, rng: np.random.Generator) -> dict:
        out = self.mapper(record, rng)
        out["sem_seg"] = out["sem_seg"].long()
        return out


def loader_with(cfg: CfgNode, mapper: Callable) -> DataLoader:
    """Our training loader with another mapper in place of ours: same records, sampler, seeds and workers."""
    ours = build_train_loader(cfg)
    return DataLoader(
        MapDataset(ours.dataset.records, mapper),
        batch_sampler=ours.batch_sampler,
        collate_fn=trivial_batch_collator,
        num_workers=ours.num_workers,
        persistent_workers=ours.num_workers > 0,
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=os.path.join(tempfile.gettempdir(), "freemask_bench_data"))
    parser.add_argument("--num-images", type=int, default=16, help="training images to generate and cycle through")
    parser.add_argument("--iters", type=int, default=160, help="samples per pipeline and measurement")
    parser.add_argument("--workers", type=int, default=2, help="DATALOADER.NUM_WORKERS of the loader measurement")
    parser.add_argument("--batch", type=int, default=4, help="SOLVER.IMS_PER_BATCH of the loader measurement")
    parser.add_argument("--size", type=parse_size, default=(512, 683), help="HEIGHTxWIDTH of the generated images")
    args = parser.parse_args(argv)

    prepare_images(args.root, args.num_images, args.size)
    os.environ["DETECTRON2_DATASETS"] = args.root  # the toy datasets read it when loaded
    cfg = bench_config(args.workers, args.batch)
    records = DatasetCatalog.get(DATASET)
    mappers = {"reference": ReferenceMapper.from_config(cfg), "ours": SemSegDatasetMapper.from_config(cfg)}

    per_worker = mapper_rates(mappers, records, args.iters)
    batches = max(1, args.iters // (2 * args.batch))
    make_loaders = {
        "reference": lambda: loader_with(cfg, mappers["reference"]),
        "ours": lambda: build_train_loader(cfg),
        "ours, int64": lambda: loader_with(cfg, WidenLabels(mappers["ours"])),
        "transfer": lambda: loader_with(cfg, ReadyTensors(cfg.INPUT.CROP.SIZE, torch.uint8)),
        "transfer, int64": lambda: loader_with(cfg, ReadyTensors(cfg.INPUT.CROP.SIZE, torch.int64)),
    }
    full = loader_rates(make_loaders, batches)

    rows = [
        ["mapper, 1 process, 1 OpenCV thread", per_worker["reference"], per_worker["ours"]],
        [f"train loader, {args.workers} workers, batch {args.batch}", full["reference"], full["ours"]],
    ]
    rows = [[what, f"{ref:.1f}", f"{ours:.1f}", f"{ours / ref:.2f}x"] for what, ref, ours in rows]
    print(
        f"\n{len(records)} images of {args.size[0]}x{args.size[1]}, ADE20K recipe (shortest edge 256..1024, crop "
        f"{cfg.INPUT.CROP.SIZE[0]}, cat_max_ratio {cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA}, flip, photometric), "
        f"{args.iters} samples each, {os.cpu_count()} CPUs"
    )
    print(tabulate(rows, headers=["samples/s", "reference (float32)", "ours", "ours / reference"], tablefmt="github"))
    print(
        f"loader ceiling: {full['transfer']:.0f} samples/s with a mapper returning ready tensors (the per-sample "
        f"transfer cost both pipelines pay on top of mapping)"
    )
    dtype_rows = [
        [f"train loader, ours, {args.workers} workers", full["ours, int64"], full["ours"]],
        ["ready tensors (loader ceiling)", full["transfer, int64"], full["transfer"]],
    ]
    dtype_rows = [[what, f"{wide:.1f}", f"{narrow:.1f}", f"{narrow / wide:.2f}x"] for what, wide, narrow in dtype_rows]
    headers = ["samples/s", "sem_seg int64 (before)", "sem_seg uint8 (now)", "uint8 / int64"]
    print(tabulate(dtype_rows, headers=headers, tablefmt="github"))


if __name__ == "__main__":
    main()
