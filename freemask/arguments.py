"""detectron2's command-line flags for train_net.py, and the choices of other tools' flags, outside freemask.engine
(which loads torch) so that --help answers at once."""

import argparse
import shlex
import sys
from typing import Optional, Sequence

from .commands import is_command_program

# tools/demo.py --task: the outputs a model can draw, in the order freemask.engine.demo lists those a config turns on.
DEMO_TASKS = ("semantic", "panoptic", "instance")


def default_argument_parser(description: Optional[str] = None) -> argparse.ArgumentParser:
    """The detectron2 flags: --config-file, --resume, --eval-only, --num-gpus, --num-machines, --machine-rank,
    --dist-url, then any number of trailing ``KEY VALUE`` config overrides."""
    parser = argparse.ArgumentParser(
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Trailing KEY VALUE pairs override the config, e.g. SOLVER.MAX_ITER 1000 MODEL.WEIGHTS ckpt.pth",
    )
    parser.add_argument("--config-file", default="", metavar="FILE", help="path to a YAML config")
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/last_checkpoint if it exists")
    parser.add_argument("--eval-only", action="store_true", help="evaluate MODEL.WEIGHTS on DATASETS.TEST and exit")
    parser.add_argument("--num-gpus", type=int, default=1, help="processes per machine (one per GPU; gloo on CPU)")
    parser.add_argument("--num-machines", type=int, default=1)
    parser.add_argument("--machine-rank", type=int, default=0, help="rank of this machine (0 .. num-machines - 1)")
    parser.add_argument(
        "--dist-url", default="auto", help="rendezvous address, e.g. tcp://host:port; 'auto' picks a free local port"
    )
    parser.add_argument("opts", default=[], nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    return parser


def resume_command(argv: Optional[Sequence[str]] = None) -> str:
    """This process's command line with ``--resume`` (right after the script, where argparse always reads it as an
    option, even before trailing KEY VALUE overrides), quoted for pasting into a shell."""
    program, *args = list(sys.argv if argv is None else argv)
    if "--resume" not in args:
        args.insert(0, "--resume")
    # "freemask train" (the program name freemask.commands.main sets) is typed as is; a script is run by python.
    command = [program] if is_command_program(program) else ["python", shlex.quote(program)]
    return " ".join([*command, *(shlex.quote(a) for a in args)])
