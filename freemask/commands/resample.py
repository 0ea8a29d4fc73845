"""FreeMask hardness-aware re-sampling: repeat the synthetic pairs of the real masks a real-trained model finds hard.
Installed: `freemask resample ARGS`; in a checkout also `python tools/resample_syn.py ARGS`, as below.

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

from freemask import cli


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


def run(args: argparse.Namespace) -> None:
    from freemask.synthetic.class_loss import read_class_loss
    from freemask.synthetic.resample.run import ResampleOptions, SyntheticResampler
    from freemask.synthetic.sources import SourceSpec

    ignore = 255 if args.ignore_label is None else args.ignore_label
    real = SourceSpec.from_args(args, "real", ignore).real_masks()
    synthetic = SourceSpec.from_args(args, "syn").synthetic_pairs()
    class_loss = read_class_loss(args.class_loss, real.num_classes)
    folder = args.copy or args.symlink
    options = ResampleOptions(
        max_copies=args.max_copies,
        seed=args.seed,
        output=args.output,
        folder=folder,
        symlink=bool(args.symlink),
        allow_orphans=args.allow_orphans,
        workers=args.workers,
        progress=not args.no_progress,
    )
    resampler = SyntheticResampler(real, synthetic, class_loss, options)
    manifest_folder = "--output" if args.output else "the manifest folder (see --output)"
    cli.check_output_folders(
        [
            ("--copy" if args.copy else "--symlink", folder),
            (manifest_folder, os.path.dirname(os.path.abspath(resampler.manifest))),
        ]
    )
    resampler.run()


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
