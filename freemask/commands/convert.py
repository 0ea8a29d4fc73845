"""Convert a released Mask2Former, FreeSeg, SegFormer, Segmenter or SeMask-FPN checkpoint into this project's layout,
for MODEL.WEIGHTS.
Installed: `freemask convert ARGS`; in a checkout also `python tools/convert_checkpoint.py ARGS`, as below.

    python tools/convert_checkpoint.py model_final_<id>.pkl m2f.pth --config-file <config.yaml>
    python tools/convert_checkpoint.py freeseg_model_final.pth freeseg.pth \
        --config-file configs/coco-stuff-164k/open-vocabulary/freeseg/freeseg_R50_alltask_bs32_60k.yaml
    python tools/convert_checkpoint.py iter_160000.pth m2f.pth --from mmseg --config-file <config.yaml>
    python tools/convert_checkpoint.py iter_320000.pth b4.pth --config-file <segformer b4 config.yaml>
    python tools/convert_checkpoint.py semask_tiny_ade20k.pth semask_t.pth --config-file <semask config.yaml>
    python train_net.py --config-file <config.yaml> --eval-only MODEL.WEIGHTS m2f.pth

Sources: official Mask2Former (detectron2 .pkl or .pth), FreeSeg's stage-2 models (R50 and R101c .pth, detectron2
layout; they carry their frozen CLIP, so MODEL.CLIP_ADAPTER.CLIP_WEIGHTS may stay empty when MODEL.WEIGHTS is the
result), official SeMask-FPN (MMSegmentation 0.x .pth) and FreeMask's MMSegmentation Mask2Former, SegFormer (MiT-B2/B4)
and Segmenter (ViT-S/B mask transformer) .pth files; the layout is recognised from the keys (--from forces one). Nothing
from the file is executed: .pkl files are read with an unpickler that only builds numpy arrays, .pth files with torch's
weights_only loader. With --config-file (and trailing KEY VALUE overrides) the result is also checked against the model
that config builds. Every key left over is listed; then the tool exits 1 without writing DST. The output {"model":
state_dict} is written atomically.
"""

import argparse
import os
import sys
from typing import Optional, Sequence

from freemask import cli
from freemask.config import ConfigError

# The converters (torch) are imported once the arguments are parsed, so that --help answers without loading them.


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``freemask convert`` / ``tools/convert_checkpoint.py``: :func:`convert` through the command-line runner."""
    return cli.run(convert, argv)


def convert(argv: Optional[Sequence[str]] = None) -> int:
    """Convert SRC into DST; 1 after one line when the file cannot be converted."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", metavar="SRC", help="released checkpoint (.pkl or .pth)")
    parser.add_argument("destination", metavar="DST", help="converted checkpoint to write (.pth)")
    parser.add_argument("--from", dest="layout", default="auto", help="source layout: a family or name (default: auto)")
    parser.add_argument(
        "--config-file", default="", metavar="FILE", help="check the result against this config's model"
    )
    parser.add_argument("opts", nargs="*", metavar="KEY VALUE", help="config overrides for the check")
    args = parser.parse_intermixed_args(argv)
    from freemask.checkpoint import CheckpointError
    from freemask.checkpoint.convert import (
        LAYOUTS,
        check_against_model,
        convert_checkpoint,
        model_state_from_config,
        save_converted,
    )
    from freemask.engine.defaults import setup_cfg

    choices = ["auto"] + sorted({lay.family for lay in LAYOUTS} | {lay.name for lay in LAYOUTS})
    if args.layout not in choices:
        parser.error(f"argument --from: invalid choice: {args.layout!r} (choose from {', '.join(choices)})")
    try:
        cfg = setup_cfg(args.config_file, args.opts) if args.config_file or args.opts else None
        report = convert_checkpoint(args.source, args.layout)
        if os.path.exists(args.destination) and os.path.samefile(args.source, args.destination):
            raise CheckpointError(f"{args.destination}: is the source file; choose another output path")
        if cfg is not None:
            check_against_model(report, model_state_from_config(cfg))
        print(report.summary())
        problems = report.problems()
        if problems:
            raise CheckpointError(f"{'; '.join(problems)} (listed above); {args.destination} not written")
        save_converted(report.tensors, args.destination)
    except (CheckpointError, ConfigError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.destination} ({len(report.tensors)} tensors)")
    if report.note:
        print(f"note: {report.note}")
    return 0
