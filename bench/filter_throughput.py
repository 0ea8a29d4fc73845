#!/usr/bin/env python
"""Synthetic images/s of tools/filter_syn.py's engine against a re-creation of the release's design, side by side.

    python bench/filter_throughput.py                                  # toy data, random-init toy Semantic FPN
    python bench/filter_throughput.py --size 512x512 --num-images 32 --batch-size 16 --num-workers 8 \\
        MODEL.WEIGHTS output/toy_semantic_fpn_R18/model_final.pth
    python bench/filter_throughput.py --config-file X.yaml --syn-dataset ade20k_syn_sem_seg_train \\
        --real-dataset ade20k_sem_seg_train --limit 2000 MODEL.WEIGHTS ckpt.pth

Both designs filter the same synthetic pairs with the same model and thresholds (class means from our pass 1 on the
real split, not timed); only pass 2 is timed, from the first read to the last mask on disk:

* release: the release's preprocess/filter.py structure — batch 1, float32, one loader worker normalising with
  torchvision in the worker, Pillow decoding, a Python loop over the classes present, the mask moved to the host
  and saved with Pillow before the next image is read;
* ours: ``SyntheticFilter.filter_pass`` as the tool runs it — batches of same-sized images, autocast on GPU,
  --num-workers OpenCV decoding workers, normalisation on the device, masks encoded and saved on background threads.

Rounds alternate between the designs so a busy machine slows both alike; the table gives the median of the rounds
and how many mask pixels differ between the two designs' outputs (padding-free batches: expect 0 or a handful of
threshold ties broken differently by float rounding). Toy data is generated under --root when the default
datasets are used.
"""

import argparse
import os
import statistics
import tempfile
import time
from typing import Dict, List, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tabulate import tabulate
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from freemask.data.datasets.toy import TOY_CLASSES
from freemask.engine import setup_cfg
from freemask.modeling import build_model
from freemask.synthetic.filter.batches import image_sizes
from freemask.synthetic.filter.options import TOLERANCE_MARGIN, FilterOptions
from freemask.synthetic.filter.outputs import mask_file_name
from freemask.synthetic.filter.rule import class_thresholds
from freemask.synthetic.filter.run import SyntheticFilter, load_filter_model
from freemask.synthetic.sources import MaskSource, SourceSpec
from freemask.toy.generator import ToyParams, generate_toy_dataset, parse_size

TOY_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "toy",
                          "semantic-segmentation", "semantic_fpn_R18_toy.yaml")  # fmt: skip


class ReleaseStyleDataset(Dataset):
    """The release's InferDataset: Pillow decoding, ToTensor + Normalize in the worker, the mask as int64."""

    def __init__(self, records: Sequence[dict], mean: Sequence[float], std: Sequence[float]) -> None:
        self.records = list(records)
        self.transform = transforms.Compose(
            [transforms.ToTensor(), transforms.Normalize([m / 255 for m in mean], [s / 255 for s in std])]
        )

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int):
        record = self.records[index]
        image = Image.open(record["file_name"]).convert("RGB")
        mask = np.array(Image.open(record["sem_seg_file_name"]))
        return self.transform(image), torch.from_numpy(mask).long(), mask_file_name(record)


@torch.no_grad()
def run_release_design(model, source: MaskSource, thresholds: torch.Tensor, output: str) -> None:
    """Pass 2 one image at a time, as the release does (raw ADE20K-style masks: 0 = unlabeled)."""
    device = model.pixel_mean.device
    loader = DataLoader(
        ReleaseStyleDataset(source.records, model.pixel_mean.flatten().tolist(), model.pixel_std.flatten().tolist()),
        batch_size=1, num_workers=1, pin_memory=device.type == "cuda",
    )  # fmt: skip
    for image, mask, names in loader:
        image, mask = image.to(device), mask.to(device)
        loss = F.nll_loss(model.predict_log_probs(image), mask - 1, ignore_index=-1, reduction="none")
        filtered = mask.clone()
        for value in torch.unique(mask).tolist():
            if value == 0:
                continue
            filtered[(mask == value) & (loss > thresholds[value - 1].item())] = 0
        Image.fromarray(filtered.cpu().numpy().astype(np.uint8)[0]).save(os.path.join(output, names[0]))


def differing_pixels(first: str, second: str, names: List[str]) -> int:
    return sum(int((np.array(Image.open(os.path.join(first, n))) != np.array(Image.open(os.path.join(second, n))))
                   .sum()) for n in names)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", default=TOY_CONFIG)
    parser.add_argument("--syn-dataset", default="toy_syn_sem_seg_train")
    parser.add_argument("--real-dataset", default="toy_sem_seg_train", help="for the thresholds (pass 1, untimed)")
    parser.add_argument("--root", default=os.path.join(tempfile.gettempdir(), "freemask_filter_bench"),
                        help="where the toy data is generated (toy datasets only)")  # fmt: skip
    parser.add_argument("--size", default="256x256", help="toy image size HxW")
    parser.add_argument("--num-images", type=int, default=16, help="toy real images (x --seeds synthetic)")
    parser.add_argument("--seeds", type=int, default=4, help="toy synthetic copies per real image")
    parser.add_argument("--limit", type=int, default=0, help="filter only the first N synthetic pairs (0 = all)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, e.g. MODEL.WEIGHTS ckpt.pth")
    args = parser.parse_args()

    if args.syn_dataset.startswith("toy_"):
        height, width = parse_size(args.size)
        params = ToyParams(num_train=args.num_images, num_val=1, num_seeds=args.seeds, height=height, width=width)
        generate_toy_dataset(args.root, params)
        os.environ["DETECTRON2_DATASETS"] = args.root
    cfg = setup_cfg(args.config_file, args.opts)
    model = load_filter_model(cfg) if cfg.MODEL.WEIGHTS else build_model(cfg).eval()
    syn = SourceSpec(args.syn_dataset).pairs()
    if args.limit:
        syn = MaskSource(syn.description, syn.records[: args.limit], syn.ignore_label, syn.class_names)
    on_gpu = model.pixel_mean.device.type == "cuda"
    amp_dtype = getattr(torch, cfg.SOLVER.AMP.DTYPE) if on_gpu else None
    real = SourceSpec(args.real_dataset)
    names = syn.class_names or list(TOY_CLASSES)

    def ours(output: str) -> SyntheticFilter:
        options = FilterOptions(
            output, batch_size=args.batch_size, num_workers=args.num_workers, amp_dtype=amp_dtype, progress=False
        )
        return SyntheticFilter(model, options, syn, names, real)

    class_loss, _ = ours("unused").class_loss_pass(real.pairs())
    thresholds = class_thresholds(class_loss.mean_loss, TOLERANCE_MARGIN)

    seconds: Dict[str, List[float]] = {"release": [], "ours": []}
    with tempfile.TemporaryDirectory() as scratch:
        for round_index in range(args.rounds + 1):  # round 0 warms up both designs and is not counted
            for design in seconds:
                output = os.path.join(scratch, f"{design}_{round_index}")
                os.makedirs(output)
                if on_gpu:
                    torch.cuda.synchronize()
                start = time.perf_counter()
                if design == "release":
                    run_release_design(model, syn, thresholds.float(), output)
                else:
                    ours(output).filter_pass(thresholds)
                if round_index:
                    seconds[design].append(time.perf_counter() - start)
        files = [mask_file_name(r) for r in syn.records]
        diff = differing_pixels(os.path.join(scratch, "release_1"), os.path.join(scratch, "ours_1"), files)
    total_pixels = sum(h * w for h, w in image_sizes([r["file_name"] for r in syn.records]))

    release = statistics.median(seconds["release"])
    rows = []
    for design, batch, workers in (("release", 1, 1), ("ours", args.batch_size, args.num_workers)):
        median = statistics.median(seconds[design])
        precision = "float32" if design == "release" or not on_gpu else cfg.SOLVER.AMP.DTYPE
        rate = len(syn.records) / median
        rows.append([design, batch, precision, workers, len(syn.records), f"{median:.2f}", f"{rate:.1f}",
                     f"{release / median:.2f}x"])  # fmt: skip
    device = torch.cuda.get_device_name() if on_gpu else f"CPU, {torch.get_num_threads()} torch threads"
    print(f"{cfg.MODEL.META_ARCHITECTURE} on {device}; {args.rounds} rounds, median")
    headers = ["design", "batch", "precision", "workers", "images", "s", "images/s", "speed-up"]
    print(tabulate(rows, headers=headers, tablefmt="github"))
    print(f"mask pixels differing between the designs: {diff} of {total_pixels}")


if __name__ == "__main__":
    main()
