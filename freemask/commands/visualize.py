"""Show what tools/filter_syn.py removed: one PNG per synthetic pair with three panels, as in the FreeMask paper's
appendix figures:  image | synthetic mask (dataset palette) | the same mask with the filtered pixels in white, then a
legend of the mask's classes. Images whose shorter side is under 256 pixels are enlarged by an integer factor
(pixels repeated, so colours stay exact).
Installed: `freemask visualize ARGS`; in a checkout also `python tools/visualize_filtered.py ARGS`, as below.

  python tools/visualize_filtered.py --syn-dataset toy_syn_sem_seg_train --output vis/ --most-filtered --limit 20
  python tools/visualize_filtered.py --syn-img-path S/images --syn-mask-path S/annotations \\
      --filtered-mask-path S/annotations_filtered --reduce-zero-label --palette ade20k_sem_seg_train --output vis/

A filtered pixel is one labelled in the original mask and ignored in the filtered one (same file name; for raw
ADE20K-style masks, --reduce-zero-label or a dataset that uses it, "ignored" is 0). Originally unlabeled pixels stay
black in both masks. With --syn-dataset the filtered masks are read from <root>/annotations_filtered (where
filter_syn.py writes them by default) unless --filtered-mask-path says otherwise. The filtered fraction is filtered /
labelled pixels, as in filter_stats.json.

Files are named <stem>.png, or <rank>_<stem>.png with --most-filtered / --least-filtered so a file browser lists them
in that order; each is written atomically and rewritten on every run (rendering is cheap).
"""

import argparse
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from freemask import cli
from freemask.data.catalog import DatasetCatalog, DatasetNotRegisteredError, MetadataCatalog
from freemask.data.datasets import load_sem_seg  # importing registers the builtin datasets
from freemask.data.datasets.sem_seg import default_palette
from freemask.data.datasets.synthetic import FILTERED_MASKS_DIR, MASKS_DIR
from freemask.data.errors import DatasetError
from freemask.data.mappers.semantic import read_image, read_mask, reduce_zero_label
from freemask.utils.visualizer import FILTERED_COLOR, colorize, labelled_panels, save_image, title_strip, vstack

_SHOWN = 3


@dataclass(frozen=True)
class Pair:
    """One synthetic image with its original and filtered mask; ``reduce_zero`` for raw ADE20K-style masks."""

    stem: str
    image: str
    mask: str
    filtered: str
    reduce_zero: bool


@dataclass(frozen=True)
class Palette:
    colors: list[list[int]]
    ignore_label: int
    names: list[str]


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("data (a registered synthetic dataset, or folders)")
    data.add_argument("--syn-dataset", metavar="NAME", help="e.g. ade20k_syn_sem_seg_train")
    data.add_argument("--syn-img-path", metavar="DIR")
    data.add_argument("--syn-mask-path", metavar="DIR", help="original masks")
    data.add_argument("--filtered-mask-path", metavar="DIR", help="masks written by tools/filter_syn.py")
    data.add_argument(
        "--reduce-zero-label", action="store_true", help="folder masks are raw ADE20K-style (0 = unlabeled)"
    )
    data.add_argument("--ignore-label", type=int, default=255, help="ignore label of folder masks (default 255)")
    data.add_argument("--palette", metavar="NAME", help="registered dataset whose colours folder masks use")
    data.add_argument("--image-ext", default=".jpg", help="image extension in folders (default .jpg)")
    data.add_argument("--mask-ext", default=".png", help="mask extension in folders (default .png)")
    pick = parser.add_argument_group("selection")
    pick.add_argument("--names", metavar="STEMS", help="comma-separated file stems to show, e.g. a_seed_42,b_seed_43")
    order = pick.add_mutually_exclusive_group()
    order.add_argument("--most-filtered", action="store_true", help="largest filtered fraction first")
    order.add_argument("--least-filtered", action="store_true", help="smallest filtered fraction first")
    pick.add_argument("--limit", type=int, metavar="N", help="render at most N pairs (after sorting)")
    out = parser.add_argument_group("output")
    out.add_argument("--output", required=True, metavar="DIR", help="folder for the panels")
    out.add_argument("--no-title", action="store_true", help="no strip with the file name and filtered fraction")
    out.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="reading/rendering threads")
    return parser


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    folders = (args.syn_img_path, args.syn_mask_path)
    if args.syn_dataset and any(folders):
        parser.error("give --syn-dataset or --syn-img-path/--syn-mask-path, not both")
    if not args.syn_dataset and not all(folders):
        parser.error("no data: pass --syn-dataset NAME, or --syn-img-path, --syn-mask-path and --filtered-mask-path")
    if not args.syn_dataset and not args.filtered_mask_path:
        parser.error("--filtered-mask-path is needed with folders (the --output of tools/filter_syn.py)")
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be at least 1, got {args.limit}")
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def pairs_from_dataset(name: str, filtered_dir: str | None) -> list[Pair]:
    """Pairs of a registered split: any of all / filtered / resampled, the other mask found in the sibling folder."""
    pairs = []
    for record in DatasetCatalog.get(name):
        mask_dir, file_name = os.path.split(record["sem_seg_file_name"])
        root = os.path.dirname(mask_dir)
        if os.path.basename(mask_dir) == FILTERED_MASKS_DIR:
            original, filtered = os.path.join(root, MASKS_DIR, file_name), record["sem_seg_file_name"]
        else:
            original, filtered = record["sem_seg_file_name"], os.path.join(root, FILTERED_MASKS_DIR, file_name)
        if filtered_dir:
            filtered = os.path.join(filtered_dir, file_name)
        stem = _stem(record["file_name"])
        pairs.append(Pair(stem, record["file_name"], original, filtered, bool(record.get("reduce_zero_label"))))
    return pairs


def pairs_from_folders(args: argparse.Namespace) -> list[Pair]:
    if not os.path.isdir(args.filtered_mask_path):
        raise DatasetError(
            f"--filtered-mask-path {args.filtered_mask_path}: folder not found; pass the --output folder of "
            f"tools/filter_syn.py"
        )
    records = load_sem_seg(args.syn_img_path, args.syn_mask_path, args.image_ext, args.mask_ext)
    return [
        Pair(
            _stem(r["file_name"]),
            r["file_name"],
            r["sem_seg_file_name"],
            os.path.join(args.filtered_mask_path, os.path.basename(r["sem_seg_file_name"])),
            args.reduce_zero_label,
        )
        for r in records
    ]


def palette_of(name: str | None, fallback_classes: int = 256) -> Palette:
    """Colours and ignore label of a registered dataset, or a generated palette when no dataset is named."""
    if name is None:
        return Palette(default_palette(fallback_classes), 255, [f"class_{i}" for i in range(fallback_classes)])
    if name not in DatasetCatalog:
        raise DatasetNotRegisteredError(
            f"dataset '{name}' is not registered; registered: {', '.join(sorted(DatasetCatalog.list()))}"
        )
    meta = MetadataCatalog.get(name)
    colors = [list(c) for c in meta.stuff_colors]
    names = list(meta.get("stuff_classes") or [f"class_{i}" for i in range(len(colors))])
    return Palette(colors, int(meta.get("ignore_label", 255)), names)


def select_by_names(pairs: list[Pair], names: str) -> list[Pair]:
    """The pairs whose stem (or file name) is listed, in the listed order; unknown names are an error."""
    wanted = [_stem(n.strip()) for n in names.split(",") if n.strip()]
    by_stem = {p.stem: p for p in pairs}
    unknown = [n for n in wanted if n not in by_stem]
    if unknown:
        raise DatasetError(
            f"--names: {len(unknown)} not found among the {len(pairs)} synthetic images ({', '.join(unknown[:_SHOWN])}"
            f"{', ...' if len(unknown) > _SHOWN else ''}); give image stems such as {pairs[0].stem if pairs else '?'}"
        )
    return [by_stem[n] for n in dict.fromkeys(wanted)]


def check_filtered_exist(pairs: Sequence[Pair]) -> None:
    missing = [p.filtered for p in pairs if not os.path.isfile(p.filtered)]
    if missing:
        folder = os.path.dirname(missing[0])
        shown = ", ".join(os.path.basename(m) for m in missing[:_SHOWN]) + (", ..." if len(missing) > _SHOWN else "")
        raise DatasetError(
            f"{len(missing)} of {len(pairs)} masks have no filtered version in {folder} ({shown}); run "
            f"tools/filter_syn.py (it resumes where it stopped), pass --filtered-mask-path, or pick others with --names"
        )


def check_output(output: str, pairs: Sequence[Pair]) -> None:
    """DatasetError when the output folder is an input folder: a panel named like a mask would replace it."""
    target = os.path.realpath(output)
    for folder in sorted({os.path.dirname(getattr(p, k)) for p in pairs for k in ("image", "mask", "filtered")}):
        if os.path.realpath(folder or ".") == target:
            raise DatasetError(f"--output {output} is an input folder; inputs are never overwritten: choose another")


def training_labels(pair: Pair, path: str, ignore_label: int) -> np.ndarray:
    mask = read_mask(path)
    return reduce_zero_label(mask, ignore_label) if pair.reduce_zero else mask


def read_labels(pair: Pair, ignore_label: int) -> tuple[np.ndarray, np.ndarray]:
    """Original and filtered training labels of a pair, checked to have the same size."""
    original = training_labels(pair, pair.mask, ignore_label)
    filtered = training_labels(pair, pair.filtered, ignore_label)
    if filtered.shape != original.shape:
        raise DatasetError(
            f"{pair.filtered}: filtered mask is {filtered.shape[1]}x{filtered.shape[0]} but the original {pair.mask} "
            f"is {original.shape[1]}x{original.shape[0]} (WxH); re-run tools/filter_syn.py with --overwrite"
        )
    return original, filtered


def filtered_pixels(original: np.ndarray, filtered: np.ndarray, ignore_label: int) -> np.ndarray:
    """Bool map of the pixels the filter removed: labelled in ``original``, ignored in ``filtered``."""
    return (original != ignore_label) & (filtered == ignore_label)


def filtered_fraction(pair: Pair, ignore_label: int) -> float:
    """Filtered / labelled pixels of a pair (0 for a mask with no labelled pixel)."""
    original, filtered = read_labels(pair, ignore_label)
    labelled = int(np.count_nonzero(original != ignore_label))
    return int(np.count_nonzero(filtered_pixels(original, filtered, ignore_label))) / labelled if labelled else 0.0


def render_pair(pair: Pair, palette: Palette, title: bool) -> tuple[np.ndarray, float]:
    """The three-panel RGB figure of a pair, small images enlarged, with a legend of the mask's classes; and its
    filtered fraction."""
    image = read_image(pair.image)
    original, filtered = read_labels(pair, palette.ignore_label)
    if image.shape[:2] != original.shape:
        raise DatasetError(
            f"{pair.mask}: mask is {original.shape[1]}x{original.shape[0]} but its image {pair.image} is "
            f"{image.shape[1]}x{image.shape[0]} (WxH); check the dataset with tools/check_dataset.py"
        )
    removed = filtered_pixels(original, filtered, palette.ignore_label)
    third = colorize(filtered, palette.colors)
    third[removed] = FILTERED_COLOR
    panels = [image, colorize(original, palette.colors), third]
    figure = labelled_panels(panels, [original], palette.names, palette.colors)
    labelled = int(np.count_nonzero(original != palette.ignore_label))
    fraction = int(np.count_nonzero(removed)) / labelled if labelled else 0.0
    if title:
        lines = [os.path.basename(pair.image), f"filtered {fraction:.2%} of {labelled} labelled pixels"]
        figure = vstack(title_strip(lines, figure.shape[1]), figure)
    return figure, fraction


def output_names(pairs: Sequence[Pair], ranked: bool) -> list[str]:
    width = len(str(len(pairs)))
    return [f"{i + 1:0{width}d}_{p.stem}.png" if ranked else f"{p.stem}.png" for i, p in enumerate(pairs)]


def run(args: argparse.Namespace) -> None:
    if args.syn_dataset:
        pairs = pairs_from_dataset(args.syn_dataset, args.filtered_mask_path)
        palette = palette_of(args.palette or args.syn_dataset)
    else:
        pairs = pairs_from_folders(args)
        named = palette_of(args.palette)
        palette = Palette(named.colors, args.ignore_label, named.names)
    if args.names:
        pairs = select_by_names(pairs, args.names)
    ranked = args.most_filtered or args.least_filtered
    if not ranked and args.limit:
        pairs = pairs[: args.limit]
    check_filtered_exist(pairs)
    check_output(args.output, pairs)
    with ThreadPoolExecutor(args.workers) as pool:
        if ranked:
            fractions = list(pool.map(lambda p: filtered_fraction(p, palette.ignore_label), pairs))
            order = sorted(range(len(pairs)), key=lambda i: fractions[i], reverse=args.most_filtered)
            pairs = [pairs[i] for i in order][: args.limit]
        os.makedirs(args.output, exist_ok=True)
        names = output_names(pairs, ranked)

        def write(index: int) -> float:
            figure, fraction = render_pair(pairs[index], palette, not args.no_title)
            save_image(os.path.join(args.output, names[index]), figure)
            return fraction

        for name, fraction in zip(names, pool.map(write, range(len(pairs)))):
            print(f"{fraction:8.2%}  {name}")
    print(f"wrote {len(pairs)} panels to {args.output}")


def main(argv: Sequence[str] | None = None) -> int:
    """``freemask visualize`` / ``tools/visualize_filtered.py``: :func:`visualize` through the command-line runner."""
    return cli.run(visualize, argv)


def visualize(argv: Sequence[str] | None = None) -> int:
    """One figure per selected pair; 1 after one line when a dataset or file is missing."""
    parser = argument_parser()
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    try:
        run(args)
    except (DatasetError, DatasetNotRegisteredError, FileNotFoundError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {message}", file=sys.stderr)
        return 1
    return 0
