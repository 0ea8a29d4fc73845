#!/usr/bin/env python
"""FreeMask hardness-aware re-sampling: repeat the synthetic pairs of the real masks a real-trained model finds hard.

    # registered datasets (the filtered split: the masks tools/filter_syn.py wrote)
    python tools/resample_syn.py --real-dataset ade20k_sem_seg_train \\
        --syn-dataset ade20k_syn_filtered_sem_seg_train --class-loss output/filter/class_loss.json
    # folders, as the release's preprocess/resample.py (raw ADE20K masks: --reduce-zero-label)
    python tools/resample_syn.py --real-mask-path ADEChallengeData2016/annotations/training --reduce-zero-label \\
        --syn-img-path ADE20K_Synthetic/images --syn-mask-path ADE20K_Synthetic/annotations_filtered \\
        --class-loss class_loss.json

Hardness of a real mask = pixel-weighted mean of the class-wise losses (class_loss.json from tools/filter_syn.py)
over its labelled pixels, on the mask resized to 512x512 (nearest); classes without a mean loss count like ignored
pixels. Rank i of N (ascending) gets min(1 + round(i / N * MAX), MAX) copies (Python round: halves to even, as
the release), drawn without replacement from the seeds found in the synthetic file names (<stem>_seed_<s>).

Output: a manifest of the chosen pairs (default <synthetic root>/resampled_manifest.txt, read by the
*_syn_resampled_* splits; nothing is copied), or with --copy/--symlink DIR the folders DIR/images and
DIR/annotations plus DIR/resampled_manifest.txt. The same inputs and --seed give the same manifest.
Differences from the release: seeds are discovered rather than assumed to be 42..61 (a mask with fewer seeds
than its copies keeps all of them, and is reported); the draw is seeded; synthetic files of a real mask that is
not in the real set are an error unless --allow-orphans.
"""

import argparse
import os
import sys
import time

from freemask import cli

_SHOWN = 3


def _shown(names) -> str:
    names = list(names)
    return ", ".join(names[:_SHOWN]) + (", ..." if len(names) > _SHOWN else "")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    real = parser.add_mutually_exclusive_group(required=True)
    real.add_argument("--real-mask-path", metavar="DIR", help="folder of the real training masks")
    real.add_argument("--real-dataset", metavar="NAME", help="registered real training split")
    parser.add_argument(
        "--reduce-zero-label",
        action="store_true",
        help="with --real-mask-path: masks are raw ADE20K style (0 = unlabeled, class k stored as k + 1)",
    )
    parser.add_argument("--ignore-label", type=int, help="with --real-mask-path (default 255)")
    parser.add_argument("--syn-img-path", metavar="DIR", help="synthetic images <real_stem>_seed_<s>.jpg")
    parser.add_argument("--syn-mask-path", metavar="DIR", help="their masks (the filtered ones, normally)")
    parser.add_argument(
        "--syn-dataset",
        metavar="NAME",
        help="registered synthetic split instead, used as named: the *_syn_filtered_* split for filtered masks",
    )
    parser.add_argument("--image-ext", default=".jpg", help="synthetic image extension (default .jpg)")
    parser.add_argument("--mask-ext", default=".png", help="mask extension, real and synthetic (default .png)")
    parser.add_argument("--class-loss", required=True, metavar="FILE", help="class_loss.json of tools/filter_syn.py")
    parser.add_argument("--max-copies", type=int, default=20, help="copies of the hardest mask (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draw (default 0)")
    parser.add_argument(
        "--output",
        metavar="FILE",
        help="manifest path (default: the manifest the *_syn_resampled_* splits read, in the synthetic root or DIR)",
    )
    folders = parser.add_mutually_exclusive_group()
    folders.add_argument("--copy", metavar="DIR", help="also copy the chosen pairs to DIR/images, DIR/annotations")
    folders.add_argument("--symlink", metavar="DIR", help="as --copy with symbolic links")
    parser.add_argument(
        "--allow-orphans", action="store_true", help="leave out synthetic files whose real mask is absent"
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="threads (default: all cores)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs, CI)")
    return parser


def _check_output(output: str, folder: str | None, synthetic) -> None:
    """Fail before the long part when the manifest could not name the files relative to its folder."""
    from freemask.data.datasets.synthetic import MANIFEST_NAME
    from freemask.data.errors import DatasetError

    base = os.path.dirname(os.path.abspath(output))
    first = next(iter(next(iter(synthetic.pairs.values())).values()))
    targets = [os.path.join(folder, "x")] if folder else first
    if any(os.path.relpath(os.path.abspath(p), base).startswith("..") for p in targets):
        where = folder or f"{os.path.dirname(first[0])} and {os.path.dirname(first[1])}"
        raise DatasetError(
            f"--output {output}: the manifest lists paths relative to its folder, which does not contain {where}; "
            f"put it in a folder that holds the files (default: {MANIFEST_NAME} in the synthetic root or DIR)"
        )


def run(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from freemask.data.datasets.synthetic import MANIFEST_NAME, write_manifest
    from freemask.data.errors import DatasetError
    from freemask.synthetic.class_loss import read_class_loss
    from freemask.synthetic.hardness import compute_hardness
    from freemask.synthetic.resample_inputs import (
        real_masks_from_dataset,
        real_masks_from_folder,
        synthetic_from_dataset,
        synthetic_from_folders,
    )
    from freemask.synthetic.resample_outputs import chosen_pairs, materialise
    from freemask.synthetic.resampling import plan_resampling

    if args.real_dataset:
        real = real_masks_from_dataset(args.real_dataset)
    else:
        ignore = 255 if args.ignore_label is None else args.ignore_label
        real = real_masks_from_folder(args.real_mask_path, args.mask_ext, args.reduce_zero_label, ignore)
    if args.syn_dataset:
        synthetic = synthetic_from_dataset(args.syn_dataset)
    else:
        synthetic = synthetic_from_folders(args.syn_img_path, args.syn_mask_path, args.image_ext, args.mask_ext)
    class_loss = read_class_loss(args.class_loss, real.num_classes)
    folder = args.copy or args.symlink
    output = args.output or os.path.join(folder or synthetic.root, MANIFEST_NAME)
    _check_output(output, folder, synthetic)
    manifest_folder = "--output" if args.output else "the manifest folder (see --output)"
    cli.check_output_folders(
        [("--copy" if args.copy else "--symlink", folder), (manifest_folder, os.path.dirname(os.path.abspath(output)))]
    )

    orphans = sorted(set(synthetic.pairs) - set(real.paths))
    if orphans:
        count = sum(len(synthetic.pairs[s]) for s in orphans)
        message = (
            f"{count} synthetic pairs of {len(orphans)} real stems ({_shown(orphans)}) in {synthetic.source} have no "
            f"real mask in {real.source}"
        )
        if not args.allow_orphans:
            raise DatasetError(
                f"{message}; pass the real masks they were made from, or --allow-orphans to leave them out"
            )
        print(f"left out: {message} (--allow-orphans)")
        synthetic = synthetic.without(orphans)

    names = sorted(real.paths)
    start = time.perf_counter()
    with tqdm(total=len(names), desc="hardness", unit="mask", disable=args.no_progress) as bar:
        hardness = compute_hardness(
            [real.paths[n] for n in names],
            class_loss.mean_loss_array(),
            real.ignore_label,
            real.reduce_zero_label,
            args.workers,
            bar.update,
        )
    seconds = time.perf_counter() - start
    plan = plan_resampling(dict(zip(names, hardness)), synthetic.seeds(), args.max_copies, args.seed)
    pairs = chosen_pairs(plan, synthetic)

    if folder:
        with tqdm(total=2 * len(pairs), desc="symlink" if args.symlink else "copy", disable=args.no_progress) as bar:
            placed = materialise(pairs, folder, bool(args.symlink), args.workers, bar.update)
        pairs = placed.pairs
        print(
            f"{folder}: {placed.written} files written, {placed.skipped} already there"
            + (f", {placed.unlisted} files not in this selection left as they are" if placed.unlisted else "")
        )
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    write_manifest(output, pairs, os.path.dirname(os.path.abspath(output)))

    print(f"real masks: {len(names)} from {real.source}; hardness in {seconds:.1f} s ({args.workers} threads)")
    print(f"synthetic pairs: {synthetic.num_pairs} of {len(synthetic.pairs)} real masks from {synthetic.source}")
    without, short = plan.without_seeds(), plan.short_of_seeds()
    histogram = plan.copies_histogram()
    print("copies per real mask (copies: masks): " + ", ".join(f"{k}: {n}" for k, n in histogram.items()))
    if without or short:
        wanted = plan.wanted_histogram()
        print("  asked by hardness rank (copies: masks): " + ", ".join(f"{k}: {n}" for k, n in wanted.items()))
    if without:
        print(f"missing seeds: {len(without)} real masks have no synthetic pair ({_shown(without)})")
    if short:
        lost = sum(int(k) - len(c) for k, c in zip(plan.wanted, plan.chosen) if 0 < len(c) < k)
        print(
            f"missing seeds: {len(short)} real masks have fewer seeds than their copies, all taken, {lost} pairs "
            f"short ({_shown(short)})"
        )
    print(f"total: {plan.total_pairs} pairs written to {output} (seed {args.seed}, max copies {args.max_copies})")


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.real_dataset and (args.reduce_zero_label or args.ignore_label is not None):
        parser.error("--reduce-zero-label/--ignore-label go with --real-mask-path; a dataset knows its convention")
    if bool(args.syn_dataset) == bool(args.syn_img_path or args.syn_mask_path):
        parser.error("give either --syn-dataset or both --syn-img-path and --syn-mask-path")
    if not args.syn_dataset and not (args.syn_img_path and args.syn_mask_path):
        parser.error("--syn-img-path and --syn-mask-path go together")
    if args.max_copies < 1 or args.workers < 1:
        parser.error("--max-copies and --workers must be at least 1")
    return cli.run(run, args)


if __name__ == "__main__":
    sys.exit(main())
