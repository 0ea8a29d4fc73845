"""The whole FreeMask pipeline on the embedded toy dataset, on CPU, in one command, then one table.
Installed: `freemask pipeline ARGS`; in a checkout also `python tools/run_freemask_pipeline.py ARGS`, as below.

    python tools/run_freemask_pipeline.py                       # about 25 minutes on 2 idle CPU cores
    python tools/run_freemask_pipeline.py --iters-scale 0.01    # every schedule x0.01: a smoke run
    python tools/run_freemask_pipeline.py --generate-tiny       # the synthetic images from tools/generate_syn.py

Steps (each the command a user would type, run as a subprocess; its output in <output root>/steps/<step>.log):
make the toy dataset if absent -> train on real images -> tools/filter_syn.py with that model -> tools/resample_syn.py
-> joint training on the raw, filtered, and filtered & resampled synthetic sets -> synthetic pre-training and real
fine-tuning -> real-only training with other seeds (the noise level). Each training is evaluated on toy_sem_seg_val
at its end. The table (mIoU, pACC, and the filter's pixel precision / recall against the defects the generator
planted) is printed and written to <output root>/freemask_pipeline.md.

Re-running the same command skips finished steps and continues an interrupted one; --force redoes every step;
--only STEP ... runs just those steps and the steps they need (--only joint_resampled: data, real, filter, resample).
The toy data lives in <output root>/datasets by default, so the filtered masks and the manifest written into its
synthetic root never touch a dataset used elsewhere. Trailing KEY VALUE pairs override the config of every
training and of the filter (they must describe the same model). Re-sampling draws at most as many copies as there
are synthetic seeds per mask (the release: 20 seeds, at most 20 copies).

--generate-tiny adds the generation step: tools/generate_syn.py --backend tiny paints as many images per real mask as
the toy data has, at its size, and the filter, the re-sampler and every training after it use those pairs instead of
the toy generator's (under <output root>/generated_datasets; the real images are the same). The tiny model is random:
it paints noise, the filter removes nearly every pixel and the table has no planted defects to score against. This
checks the chain mask -> image -> filter -> resample -> train on CPU, not the method.
"""

import argparse
import json
import os
import shlex
import sys
import time
from typing import Tuple

from freemask import cli
from freemask.commands import is_command_program
from freemask.errors import ArgumentError
from freemask.toy.generator import ToyParams

# The pipeline and the config (torch) are imported once the arguments are parsed: --help answers without them.

OUTPUT_ROOT = "output/freemask_pipeline"
GENERATING_OUTPUT_ROOT = "output/freemask_pipeline_generated"  # its own, so the two runs' steps never meet


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--output-root",
        metavar="DIR",
        help=f"(default {OUTPUT_ROOT}; {GENERATING_OUTPUT_ROOT} with --generate-tiny)",
    )
    parser.add_argument(
        "--datasets-root", metavar="DIR", help="DETECTRON2_DATASETS of every step (default <output root>/datasets)"
    )
    parser.add_argument("--iters-scale", type=_positive, default=1.0, help="multiply every schedule (default 1)")
    parser.add_argument(
        "--noise-seeds",
        type=int,
        nargs="*",
        default=[43],
        metavar="SEED",
        help="extra real-only trainings with these SEEDs (default 43; none: --noise-seeds with no value)",
    )
    parser.add_argument("--force", action="store_true", help="redo every step (the toy data is kept)")
    parser.add_argument(
        "--generate-tiny",
        action="store_true",
        help="generate the synthetic images with `freemask generate --backend tiny` (a random model: noise images) "
        "instead of using the toy generator's",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        default=[],
        metavar="STEP",
        help="run just these steps and the steps they need (e.g. joint_resampled: data, real, filter, resample and "
        "it); the table shows the others as not run",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    return parser


def _toy_shape(datasets_root: str) -> Tuple[int, int, int]:
    """(synthetic copies per real mask, height, width) of the toy data (the generator's defaults if it is still to be
    made)."""
    meta = os.path.join(datasets_root, "toy", "meta.json")
    if not os.path.isfile(meta):
        params = ToyParams()
        return params.num_seeds, params.height, params.width
    with open(meta, encoding="utf-8") as f:
        values = json.load(f)
    return int(values["num_seeds"]), int(values["height"]), int(values["width"])


def _generation(datasets_root: str):
    """The generate step at the toy data's shape; ArgumentError when tools/generate_syn.py could not paint it."""
    from freemask.toy.pipeline import Generation

    seeds, height, width = _toy_shape(datasets_root)
    if height != width or height % 8 or seeds < 1:
        raise ArgumentError(
            f"--generate-tiny needs square toy images with a side divisible by 8 and at least one seed per "
            f"mask (the --size of `freemask generate`); {os.path.join(datasets_root, 'toy')} has {height}x{width} and "
            f"{seeds} seeds: make the toy data with --size 128x128 (the default) into another --datasets-root"
        )
    return Generation(seeds=seeds, size=height)


def main(argv=None) -> int:
    args = argument_parser().parse_args(argv)
    return cli.run(run, args, argv)


def run(args: argparse.Namespace, argv=None) -> None:
    """Every step not done yet, then the table; a step's own error already reached the user as that step's line in
    its log, the PipelineError names the step and the log."""
    from freemask.engine.defaults import setup_cfg
    from freemask.model_zoo import get_config_file
    from freemask.toy.pipeline import REAL_CONFIG, PipelineOptions, run_pipeline
    from freemask.toy.pipeline_report import write_table

    setup_cfg(get_config_file(REAL_CONFIG), args.opts)  # a bad override fails here, before any step
    output_root = os.path.abspath(args.output_root or (GENERATING_OUTPUT_ROOT if args.generate_tiny else OUTPUT_ROOT))
    datasets_root = os.path.abspath(args.datasets_root or os.path.join(output_root, "datasets"))
    seeds = _toy_shape(datasets_root)[0]
    options = PipelineOptions(
        working_dir=os.getcwd(),  # where the user runs it: in a checkout its root, never site-packages
        output_root=output_root,
        datasets_root=datasets_root,
        iters_scale=args.iters_scale,
        noise_seeds=tuple(args.noise_seeds),
        max_copies=max(1, seeds),
        opts=tuple(args.opts),
        force=args.force,
        generation=_generation(datasets_root) if args.generate_tiny else None,
        only=tuple(args.only),
    )
    program = [sys.argv[0]] if is_command_program(sys.argv[0]) else ["python", "tools/run_freemask_pipeline.py"]
    command = " ".join([*program, shlex.join(sys.argv[1:] if argv is None else argv)]).rstrip()
    start = time.perf_counter()
    run_pipeline(options, log=lambda line: print(line, flush=True))
    table = write_table(options, command)
    print(f"\n{table}\nWritten to {os.path.join(output_root, 'freemask_pipeline.md')} ", end="")
    print(f"({time.perf_counter() - start:.0f} s in this run)")
