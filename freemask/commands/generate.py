"""FreeMask generation: N synthetic images per real mask, one per seed, written as an ADE20K_Synthetic-style root.
Installed: `freemask generate ARGS`; in a checkout also `python tools/generate_syn.py ARGS`, as below.

    # ADE20K with FreestyleNet's checkpoint, 20 seeds (42..61), 8 GPUs
    python tools/generate_syn.py --real-dataset ade20k_sem_seg_train --output $DETECTRON2_DATASETS/ADE20K_Synthetic \\
        --backend freestylenet --weights pretrained/freestyle-sd-v1-4-ade20k.ckpt \\
        --config-dir pretrained/sd-v1-4-config \\
        --seeds 42-61 --num-gpus 8
    # only the pairs tools/resample_syn.py will draw (about half): --copies-from class_loss.json
    # the tiny random model on CPU (tests, the toy pipeline): --backend tiny --size 64 --steps 2

Output: ROOT/images/<stem>_seed_<s>.jpg (JPEG quality --jpeg-quality, 95), ROOT/annotations/<stem>_seed_<s>.png (the
real mask resized to the image, nearest, so the pair lines up pixel for pixel; written in the encoding the dataset's
*_syn_* splits read: raw ADE20K-style for ADE20K and the toy, 0..K-1 with 255 ignore for COCO-Stuff; for folders the
input's), ROOT/generation_manifest.json (backend, weight-file sha256s, every setting that changes pixels, the pairs).
The registered *_syn_* splits and tools/filter_syn.py read the root unchanged.

Every image depends on its (stem, seed) alone: its noise comes from a generator seeded by that pair, so any
--batch-size and --num-gpus give the same files. A killed run re-run with the same command finishes only the
missing pairs, with the files of an uninterrupted run; a run adding seeds or masks to a root adds only those pairs.
A root holding pairs made with other settings is refused (--overwrite deletes its pairs and redoes them). Inputs
are never modified; nothing is downloaded (the tool refuses hub names and missing files instead). A truncated or
corrupt weight, config or tokenizer file is one line naming it, before any worker starts.

--copies-from class_loss.json (tools/filter_syn.py's pass 1 on the real images): the resampler's copy count of a
mask depends only on the real masks and the class losses, so generate for each mask exactly the seeds
tools/resample_syn.py draws with the same --seed (--draw-seed here) and --max-copies; it then takes them all.
"""

import argparse
import os
from typing import List, Optional

from freemask import cli

BACKENDS = ("freestylenet", "controlnet", "tiny")
TORCH_DTYPES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}
FIRST_SEED = 42


def parse_seeds(text: str) -> List[int]:
    """``42-61`` (inclusive range), ``42,45,50`` (a list), or ``20`` (that many seeds from 42: 42..61)."""
    try:
        if "-" in text.strip("-"):
            low, high = (int(v) for v in text.split("-", 1))
            seeds = list(range(low, high + 1))
        elif "," in text:
            seeds = [int(v) for v in text.split(",") if v.strip()]
        else:
            seeds = list(range(FIRST_SEED, FIRST_SEED + int(text)))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: write a range 42-61, a list 42,43 or a count 20") from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"{text!r}: need at least one seed, none negative or repeated")
    return sorted(seeds)


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    masks = parser.add_argument_group("real masks (a registered dataset, or a folder)")
    masks.add_argument("--real-dataset", metavar="NAME", help="real training split, e.g. ade20k_sem_seg_train")
    masks.add_argument("--real-mask-path", metavar="DIR", help="folder of real masks <stem>.png")
    masks.add_argument(
        "--reduce-zero-label", action="store_true", help="folder masks are raw ADE20K-style (0 = unlabelled, k+1)"
    )
    masks.add_argument("--ignore-label", type=int, default=255, help="with --real-mask-path (default 255)")
    masks.add_argument("--mask-ext", default=".png", help="with --real-mask-path (default .png)")
    masks.add_argument(
        "--classes", metavar="NAME", help="registered dataset whose classes folder masks use (default: --real-dataset)"
    )
    gen = parser.add_argument_group("generation")
    gen.add_argument("--output", required=True, metavar="ROOT", help="synthetic root (images/, annotations/)")
    gen.add_argument("--seeds", type=parse_seeds, default=parse_seeds("42-61"), help="42-61 (default), 42,43 or 20")
    gen.add_argument("--backend", choices=BACKENDS, default="freestylenet", help="(default freestylenet)")
    gen.add_argument("--weights", metavar="PATH", help="freestylenet: the .ckpt; controlnet: the ControlNet folder")
    gen.add_argument(
        "--config-dir", metavar="DIR", help="freestylenet: SD v1 component configs; controlnet: the SD 1.5 folder"
    )
    gen.add_argument("--steps", type=int, default=50, help="sampling steps (default 50, PLMS)")
    gen.add_argument("--guidance", type=float, default=2.0, help="classifier-free guidance scale (default 2.0)")
    gen.add_argument("--size", type=int, default=512, help="image side in pixels (default 512)")
    gen.add_argument("--batch-size", type=int, default=4, help="images per sampler call and GPU (default 4)")
    gen.add_argument("--dtype", choices=tuple(TORCH_DTYPES), help="default fp16 on GPU, fp32 on CPU")
    gen.add_argument("--compile", action="store_true", help="torch.compile the UNet (GPU; slower start)")
    gen.add_argument("--jpeg-quality", type=int, default=95, help="(default 95)")
    gen.add_argument("--overwrite", action="store_true", help="delete the root's pairs and generate them again")
    gen.add_argument("--no-progress", action="store_true", help="no progress bar (logs, CI)")
    gen.add_argument("--workers", type=int, default=4, help="threads reading masks for the checks (default 4)")
    sel = parser.add_argument_group("generate only what re-sampling draws (tools/resample_syn.py)")
    sel.add_argument("--copies-from", metavar="FILE", help="class_loss.json: the seeds resample_syn.py would draw")
    sel.add_argument("--max-copies", type=int, default=20, help="resample_syn.py's --max-copies (default 20)")
    sel.add_argument("--draw-seed", type=int, default=0, help="resample_syn.py's --seed (default 0)")
    dist = parser.add_argument_group("processes (as train_net.py)")
    dist.add_argument("--num-gpus", type=int, default=1, help="processes per machine (one per GPU; gloo on CPU)")
    dist.add_argument("--num-machines", type=int, default=1)
    dist.add_argument("--machine-rank", type=int, default=0)
    dist.add_argument("--dist-url", default="auto", help="tcp://host:port of machine 0; 'auto' on one machine")
    return parser


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if bool(args.real_dataset) == bool(args.real_mask_path):
        parser.error("give the real masks as --real-dataset NAME or --real-mask-path DIR (one of them)")
    if args.real_dataset and args.reduce_zero_label:
        parser.error("--reduce-zero-label goes with --real-mask-path; a registered dataset knows its convention")
    if args.real_mask_path and not args.classes:
        parser.error("--real-mask-path needs --classes NAME: the registered dataset whose classes the masks use")
    for flag in ("steps", "size", "batch_size", "workers", "max_copies", "num_gpus"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}")
    if args.size % 8:
        parser.error(f"--size must be a multiple of 8 (the VAE's downsampling), got {args.size}")
    if not 1 <= args.jpeg_quality <= 100:
        parser.error(f"--jpeg-quality must be in 1..100, got {args.jpeg_quality}")
    if args.backend != "tiny" and not args.weights:
        parser.error(f"--backend {args.backend} needs --weights (see --help)")
    if args.backend != "tiny" and not args.config_dir:
        parser.error(f"--backend {args.backend} needs --config-dir (see --help)")


def _check_paths(args: argparse.Namespace) -> None:
    """Missing files and hub names in one line before the workers start (the backend checks the folders' content)."""
    from freemask.errors import PathNotFoundError
    from freemask.generation.offline import refuse_remote

    for flag, path in {"--weights": args.weights, "--config-dir": args.config_dir}.items():
        if path:
            refuse_remote(path, flag)
            if not os.path.exists(path):
                raise PathNotFoundError(
                    f"{flag} {path} does not exist; download it first (README: Generating synthetic images); "
                    f"nothing is fetched from the hub"
                )
    if args.copies_from and not os.path.isfile(args.copies_from):
        raise PathNotFoundError(
            f"--copies-from {args.copies_from} does not exist; write it with tools/filter_syn.py (class_loss.json)"
        )


def build_job(args: argparse.Namespace):
    """The checks that need the masks (labels, output vs input) and the work list, in the launching process."""
    import dataclasses

    from freemask.data import datasets  # noqa: F401  (registers the builtin datasets)
    from freemask.generation.run import (
        GenerationJob,
        all_pairs,
        check_mask_labels,
        check_output_is_not_input,
        raw_output_for,
        resampled_pairs,
    )
    from freemask.synthetic.sources import SourceSpec, dataset_class_names

    classes = args.classes or args.real_dataset
    class_names = tuple(dataset_class_names(classes))
    spec = SourceSpec(
        args.real_dataset,
        mask_dir=args.real_mask_path,
        reduce_zero_label=args.reduce_zero_label,
        ignore_label=args.ignore_label,
        mask_ext=args.mask_ext,
    )
    masks = spec.real_masks()
    masks = dataclasses.replace(masks, num_classes=len(class_names))
    check_output_is_not_input(args.output, masks)
    check_mask_labels(masks, len(class_names), list(masks.paths), args.workers)
    if args.copies_from:
        pairs = resampled_pairs(masks, args.seeds, args.copies_from, args.max_copies, args.draw_seed, args.workers)
    else:
        pairs = all_pairs(list(masks.paths), args.seeds)
    return GenerationJob(
        masks=masks,
        class_names=class_names,
        pairs=pairs,
        output=args.output,
        raw_output=raw_output_for(args.real_dataset, masks.reduce_zero_label),
        size=args.size,
        jpeg_quality=args.jpeg_quality,
        batch_size=args.batch_size,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )


def _backend_fn(args: argparse.Namespace, dataset: str, ignore_label: int):
    """This rank's backend builder: the rank's own GPU (or the CPU), fp16 there unless --dtype says otherwise."""

    def build():
        import torch

        from freemask.generation.backend import build_backend
        from freemask.generation.tiny import build_tiny_backend
        from freemask.utils import comm

        on_gpu = torch.cuda.is_available()
        device = f"cuda:{comm.get_local_rank()}" if on_gpu else "cpu"
        dtype = TORCH_DTYPES[args.dtype or ("fp16" if on_gpu else "fp32")]
        common = dict(steps=args.steps, guidance=args.guidance, size=args.size, device=device, dtype=dtype)
        common.update(ignore_label=ignore_label, compile_unet=args.compile)
        if args.backend == "tiny":
            return build_tiny_backend(dataset, **common)
        return build_backend(args.backend, weights=args.weights, config_dir=args.config_dir, dataset=dataset, **common)

    return build


def main_worker(args: argparse.Namespace, job) -> None:
    from freemask.generation.run import run_generation
    from freemask.utils import comm
    from freemask.utils.logger import setup_logger

    setup_logger(None, comm.get_rank())
    run_generation(job, _backend_fn(args, args.classes or args.real_dataset, job.masks.ignore_label))


def launch_workers(args: argparse.Namespace) -> None:
    import logging

    from freemask.engine import launch
    from freemask.generation.backend import check_backend_files

    check_backend_files(args.backend, args.weights, args.config_dir)
    job = build_job(args)
    logging.getLogger("freemask").setLevel(logging.INFO)
    launch(
        cli.in_worker, args.num_gpus, args.num_machines, args.machine_rank, args.dist_url, args=(main_worker, args, job)
    )


def main(argv: Optional[List[str]] = None) -> int:
    parser = argument_parser()
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    checks = [lambda: cli.check_output_folders([("--output", args.output)]), lambda: _check_paths(args)]
    return cli.run(launch_workers, args, checks=checks)
