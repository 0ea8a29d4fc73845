"""FreeMask filtering: set to "ignore" the synthetic pixels a real-trained model finds much harder than real pixels
of the same class (loss > margin x class-wise mean loss on the real images; or, with --rule quantile, loss above the
(1 - clean rate) quantile of the class's real losses).
Installed: `freemask filter ARGS`; in a checkout also `python tools/filter_syn.py ARGS`, as below.

  python tools/filter_syn.py --config-file configs/toy/semantic-segmentation/semantic_fpn_R18_toy.yaml \\
      --real-dataset toy_sem_seg_train --syn-dataset toy_syn_sem_seg_train MODEL.WEIGHTS model_final.pth
  python tools/filter_syn.py --config-file X.yaml --num-gpus 8 --real-img-path R/images --real-mask-path R/masks \\
      --syn-img-path S/images --syn-mask-path S/annotations --reduce-zero-label --output S/annotations_filtered \\
      MODEL.WEIGHTS ckpt.pth

  python tools/filter_syn.py ... --rule quantile --clean-rate 0.02 --real-val-dataset ade20k_sem_seg_val

Pass 1 writes the class-wise mean losses to class_loss.json and their histograms to class_loss_histograms.json next
to the output folder (--class-loss FILE skips it and reads the histograms beside FILE). Before pass 2 one line says
what the rule costs on clean data: "on the real images this rule would remove X% of labelled pixels (Y% of them
within 2 px of a boundary)", measured on the held-out split when given (--real-val-*), else on the training split,
exactly (one more forward over that split unless the histograms count it; --no-diagnostic skips it). Pass 2
writes one mask per synthetic image (same name) to --output (default for a registered synthetic dataset:
<root>/annotations_filtered, which the *_syn_filtered_* splits read) and filter_stats.json next to it (per class and
overall; --per-image-stats adds filter_stats_per_image.jsonl, one line per pair).
Inputs are never modified. A killed run re-run with the same command finishes only the missing masks, with the
same result as an uninterrupted run; so does a run on any number of GPUs (on CPU: with the same number of threads
per process); the output folder keeps every synthetic image's size, so a re-run reads no image header again unless
the list of images changed. Changing --tolerance-margin, --batch-size, AMP, the weights or the inputs of an existing
output needs --overwrite; so does changing --rule, --clean-rate, --boundary-band or the held-out split.

Deviations from the release's preprocess/filter.py:
  - batches of same-sized images (padding, ignored by the loss, only where sizes differ), several loader workers,
    masks saved on background threads; on GPU autocast in SOLVER.AMP.DTYPE (--no-amp: float32 as the release)
  - any model of this project; normalisation from MODEL.PIXEL_MEAN/STD (ImageNet, as the release, in the shipped
    configs); always whole-image inference at the original resolution (TEST.* modes are not used)
  - per-pixel loss -log p(label): log_softmax of the logits for Semantic FPN (the release's cross-entropy);
    Mask2Former's class scores are renormalised over classes first (see SemanticSegmentor.predict_log_probs)
  - a class absent from the real images never filters (the release's mean 0 filtered all its pixels); pixels
    already ignored stay ignored; filtered pixels get 0 in raw ADE20K-style masks, the ignore label otherwise;
    masks keep their dtype (the release always wrote uint8)
  - class losses saved to a file for tools/resample_syn.py instead of printed for copying by hand
"""

import argparse
import logging
from typing import Optional, Sequence

from freemask import cli
from freemask.synthetic.filter.options import (
    BATCH_SIZE,
    MEAN_MARGIN,
    RULES,
    TOLERANCE_MARGIN,
    check_boundary_band,
    check_clean_rate,
    check_tolerance_margin,
)

SIDES = {"syn": "--syn", "real": "--real", "real_val": "--real-val"}  # input -> its flags' prefix


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", default="", metavar="FILE", help="config of the real-trained model")
    data = parser.add_argument_group("data (a registered dataset name, or an image folder and a mask folder)")
    data.add_argument("--real-dataset", metavar="NAME", help="real training split, e.g. ade20k_sem_seg_train")
    data.add_argument("--real-img-path", metavar="DIR")
    data.add_argument("--real-mask-path", metavar="DIR")
    data.add_argument("--real-val-dataset", metavar="NAME", help="held-out real split (diagnostic, quantile rule)")
    data.add_argument("--real-val-img-path", metavar="DIR")
    data.add_argument("--real-val-mask-path", metavar="DIR")
    data.add_argument("--syn-dataset", metavar="NAME", help="synthetic split, e.g. ade20k_syn_sem_seg_train")
    data.add_argument("--syn-img-path", metavar="DIR")
    data.add_argument("--syn-mask-path", metavar="DIR")
    data.add_argument(
        "--reduce-zero-label",
        action="store_true",
        help="folder masks are raw ADE20K-style (0 = unlabeled, class k stored as k+1); filtered pixels become 0",
    )
    data.add_argument("--image-ext", default=".jpg", help="image extension in folders (default .jpg)")
    data.add_argument("--mask-ext", default=".png", help="mask extension in folders (default .png)")
    run = parser.add_argument_group("filtering")
    run.add_argument("--output", metavar="DIR", help="folder for the filtered masks (see above for the default)")
    run.add_argument(
        "--rule",
        choices=RULES,
        default=MEAN_MARGIN,
        help="mean-margin: loss > margin x class mean (FreeMask, default); quantile: loss above the (1 - clean rate) "
        "quantile of the class's real losses (held-out split when given)",
    )
    run.add_argument(
        "--tolerance-margin",
        type=float,
        help=f"mean-margin rule: filter loss > margin x class mean (default {TOLERANCE_MARGIN})",
    )
    run.add_argument(
        "--clean-rate",
        type=float,
        metavar="R",
        help="quantile rule (required there): share of clean real pixels of each class it may filter, e.g. 0.02",
    )
    run.add_argument(
        "--boundary-band",
        type=int,
        default=0,
        metavar="K",
        help="never filter pixels within K px of a class boundary (default 0: off)",
    )
    run.add_argument("--no-diagnostic", action="store_true", help="skip measuring the rule's cost on real images")
    run.add_argument("--class-loss", metavar="FILE", help="class_loss.json of an earlier run: skip pass 1")
    run.add_argument(
        "--batch-size",
        type=int,
        default=BATCH_SIZE,
        help=f"images per forward pass and GPU (default {BATCH_SIZE}); keep it when resuming",
    )
    run.add_argument("--num-workers", type=int, help="image-decoding processes per GPU (DATALOADER.NUM_WORKERS)")
    run.add_argument("--no-amp", action="store_true", help="float32 inference on GPU (AMP is on by default there)")
    run.add_argument(
        "--overwrite", action="store_true", help="redo every mask (and pass 1, unless --class-loss) instead of resuming"
    )
    run.add_argument(
        "--per-image-stats",
        action="store_true",
        help="also write filter_stats_per_image.jsonl beside filter_stats.json: one line per synthetic pair (file, "
        "labelled pixels, filtered pixels, fraction), sorted by file",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar (logs, CI)")
    dist = parser.add_argument_group("processes (as train_net.py)")
    dist.add_argument("--num-gpus", type=int, default=1, help="processes per machine (one per GPU; gloo on CPU)")
    dist.add_argument("--num-machines", type=int, default=1)
    dist.add_argument("--machine-rank", type=int, default=0)
    dist.add_argument("--dist-url", default="auto", help="tcp://host:port of machine 0; 'auto' on one machine")
    parser.add_argument("opts", default=[], nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    return parser


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exactly one way to give each input; real data only needed without --class-loss; each rule's own settings."""
    for side, required in (("syn", True), ("real", not args.class_loss), ("real_val", False)):
        flag = SIDES[side]
        name = getattr(args, f"{side}_dataset")
        folders = (getattr(args, f"{side}_img_path"), getattr(args, f"{side}_mask_path"))
        if name and any(folders):
            parser.error(f"give {flag}-dataset or {flag}-img-path/{flag}-mask-path, not both")
        if any(folders) and not all(folders):
            parser.error(f"{flag}-img-path and {flag}-mask-path go together")
        if required and not name and not any(folders):
            parser.error(f"no {side} data: pass {flag}-dataset NAME or {flag}-img-path and {flag}-mask-path")
    if args.rule == MEAN_MARGIN and args.clean_rate is not None:
        parser.error("--clean-rate belongs to --rule quantile (the mean-margin rule uses --tolerance-margin)")
    if args.rule != MEAN_MARGIN and args.tolerance_margin is not None:
        parser.error("--tolerance-margin belongs to --rule mean-margin (the quantile rule uses --clean-rate)")
    if args.rule != MEAN_MARGIN and args.clean_rate is None:
        parser.error("--rule quantile needs --clean-rate R, the share of clean real pixels it may filter (e.g. 0.02)")
    try:
        if args.tolerance_margin is not None:
            check_tolerance_margin(args.tolerance_margin, "--tolerance-margin")
        if args.clean_rate is not None:
            check_clean_rate(args.clean_rate, "--clean-rate")
        check_boundary_band(args.boundary_band, "--boundary-band")
    except ValueError as e:
        parser.error(str(e))
    if args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, got {args.batch_size}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``freemask filter`` / ``tools/filter_syn.py``: the argument and early checks, then one process per GPU."""
    parser = argument_parser()
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    return cli.run(launch_workers, args, checks=[lambda: check_before_launch(args)])


def filter_masks(args: argparse.Namespace) -> None:
    """One worker's job: pass 1 (class losses) unless --class-loss, then the filtered masks."""
    # Imported here, not at the top: --help and the early checks answer without loading torch and the model zoo.
    import torch

    from freemask.config import resolve_device
    from freemask.data.loading.loader_start import check_start_method
    from freemask.engine import setup_cfg
    from freemask.engine.defaults import register_custom_dataset
    from freemask.evaluation.results_json import Provenance, results_produced_by
    from freemask.synthetic.filter.options import FilterOptions
    from freemask.synthetic.filter.outputs import check_output_is_not_input, default_output
    from freemask.synthetic.filter.run import SyntheticFilter, load_filter_model
    from freemask.synthetic.sources import SourceSpec, check_class_count, dataset_class_names, model_class_names
    from freemask.utils import comm
    from freemask.utils.logger import setup_logger

    cfg = setup_cfg(args.config_file, args.opts)
    setup_logger(None, comm.get_rank())
    register_custom_dataset(cfg)
    num_classes = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
    ignore_label = cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE
    for name in (args.syn_dataset, args.real_dataset if not args.class_loss else None, args.real_val_dataset):
        if name:
            check_class_count(name, dataset_class_names(name), num_classes, args.config_file)
    syn = SourceSpec.from_args(args, "syn", ignore_label).pairs()
    real = SourceSpec.from_args(args, "real", ignore_label)
    heldout = SourceSpec.from_args(args, "real_val", ignore_label)
    output = args.output or default_output(syn)
    check_output_is_not_input(output, syn, real, heldout)
    cli.check_output_folders([("--output", output)])  # also the default one, before the model is built
    model = load_filter_model(cfg)
    on_gpu = resolve_device(cfg).type == "cuda"
    options = FilterOptions(
        output=output,
        rule=args.rule,
        tolerance_margin=TOLERANCE_MARGIN if args.tolerance_margin is None else args.tolerance_margin,
        clean_rate=args.clean_rate,
        boundary_band=args.boundary_band,
        diagnostic=not args.no_diagnostic,
        batch_size=args.batch_size,
        num_workers=cfg.DATALOADER.NUM_WORKERS if args.num_workers is None else args.num_workers,
        start_method=check_start_method(cfg.DATALOADER.START_METHOD),
        amp_dtype=getattr(torch, cfg.SOLVER.AMP.DTYPE) if on_gpu and not args.no_amp else None,
        class_loss=args.class_loss,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        per_image_stats=args.per_image_stats,
    )
    candidates = [n for n in (args.real_dataset,) if n] + list(cfg.DATASETS.TRAIN)
    names = model_class_names([syn], candidates, num_classes)
    specs = [spec if spec.description else None for spec in (real, heldout)]
    with results_produced_by(Provenance(cfg.MODEL.WEIGHTS, cfg)):  # filter_stats.json names the model
        SyntheticFilter(model, options, syn, names, specs[0], cfg.MODEL.WEIGHTS, specs[1]).run()


def check_before_launch(args: argparse.Namespace) -> None:
    """The config, --output and the named datasets, before any worker is spawned or model built."""
    cli.check_config_path(args.config_file)  # before the imports below, which load torch
    from freemask.engine.defaults import register_custom_dataset, setup_cfg

    cfg = setup_cfg(args.config_file, args.opts)
    cli.check_output_folders([("--output", args.output)])
    register_custom_dataset(cfg)
    named = {
        "--syn-dataset": args.syn_dataset,
        "--real-dataset": None if args.class_loss else args.real_dataset,
        "--real-val-dataset": args.real_val_dataset,
    }
    for flag, name in named.items():
        if name:
            cli.check_datasets([name], flag)


def launch_workers(args: argparse.Namespace) -> None:
    from freemask.engine import launch

    logging.getLogger("freemask").setLevel(logging.INFO)
    launch(cli.in_worker, args.num_gpus, args.num_machines, args.machine_rank, args.dist_url, args=(filter_masks, args))
