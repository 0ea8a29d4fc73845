"""The ``freemask <command>`` commands: training and every tool, the same code in a checkout and in an installed
package. ``train_net.py`` and ``tools/*.py`` are launchers of these modules, so the two forms cannot drift apart.

Each command is a module here whose ``main(argv) -> int`` parses its arguments and runs through ``freemask.cli.run``.
:data:`COMMANDS` is a static table (name -> module, one-line summary): ``freemask --help`` lists it and
:func:`hint` names a command in messages without importing any command module, so both stay torch-free. Adding a
command is one line in that table. This package's ``__init__`` imports nothing of freemask, so any module may import
:func:`hint` without an import loop.
"""

import difflib
import os
import re
import sys
from typing import Dict, NamedTuple, Optional, Sequence

PROGRAM = "freemask"


class Command(NamedTuple):
    module: str  # under freemask.commands
    summary: str  # one line for `freemask --help`
    script: str  # the launcher in a checkout, relative to the repository root (prepare: one per dataset)


COMMANDS: Dict[str, Command] = {
    "train": Command("train", "train or evaluate a model (detectron2's train_net.py flags)", "train_net.py"),
    "make-toy": Command("make_toy", "generate the embedded toy dataset", "tools/make_toy_dataset.py"),
    "check-dataset": Command("check_dataset", "check every file of registered datasets", "tools/check_dataset.py"),
    "generate": Command("generate", "paint synthetic images from real masks", "tools/generate_syn.py"),
    "filter": Command("filter", "FreeMask filtering of synthetic masks", "tools/filter_syn.py"),
    "resample": Command("resample", "hardness-aware re-sampling of synthetic pairs", "tools/resample_syn.py"),
    "visualize": Command("visualize", "draw what the filter removed", "tools/visualize_filtered.py"),
    "demo": Command("demo", "run a trained model on images and draw its predictions", "tools/demo.py"),
    "convert": Command("convert", "convert a released checkpoint for MODEL.WEIGHTS", "tools/convert_checkpoint.py"),
    "convert-clip": Command("convert_clip", "convert OpenAI's CLIP file for CLIP_WEIGHTS", "tools/convert_clip.py"),
    "compare": Command("compare", "per-class IoU gains of two runs: table and bar chart", "tools/compare_runs.py"),
    "plot": Command("plot", "loss, learning-rate and mIoU curves of training runs", "tools/plot_metrics.py"),
    "pipeline": Command("pipeline", "the whole FreeMask pipeline on the toy dataset", "tools/run_freemask_pipeline.py"),
    "prepare": Command("prepare", "convert a dataset's raw annotations, once", "datasets/prepare_<dataset>.py"),
}


def hint(name: str, args: str = "") -> str:
    """How a message names command ``name`` (with ``args``), in both forms: "`freemask make-toy --force` (in a
    checkout: `python tools/make_toy_dataset.py --force`)". For ``prepare`` the first argument is the dataset, which
    picks the launcher: "`freemask prepare voc-sem-seg` (in a checkout: `python datasets/prepare_voc_sem_seg.py`)"."""
    script, script_args = COMMANDS[name].script, args
    if name == "prepare":
        from .prepare import launcher

        dataset, _, script_args = args.partition(" ")
        script = launcher(dataset)
    tail, script_tail = (f" {a}" if a else "" for a in (args, script_args))
    return f"`{PROGRAM} {name}{tail}` (in a checkout: `python {script}{script_tail}`)"


def is_command_program(program: str) -> bool:
    """Whether ``program`` (sys.argv[0]) is the "freemask <command>" that :func:`main` sets, not a script path."""
    return program.startswith((f"{PROGRAM} ", f"python -m {PROGRAM} "))


def version() -> str:
    """The installed distribution's version; in a checkout that is not installed, pyproject.toml's."""
    from importlib import metadata

    try:
        return metadata.version(PROGRAM)
    except metadata.PackageNotFoundError:
        pyproject = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "pyproject.toml")
        try:
            with open(pyproject, encoding="utf-8") as f:
                found = re.search(r'^version\s*=\s*"([^"]+)"', f.read(), re.MULTILINE)
        except OSError:
            found = None
        return found.group(1) if found else "unknown"


def usage(program: str) -> str:
    """``freemask --help``: the commands and their summaries."""
    width = max(map(len, COMMANDS))
    lines = [f"usage: {program} <command> [arguments]  ({program} <command> --help for its own)", "", "commands:"]
    lines += [f"  {name:<{width}}  {command.summary}" for name, command in COMMANDS.items()]
    lines += ["", "options:", "  -h, --help  this list", "  --version   the installed version"]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None, program: str = PROGRAM) -> int:
    """``freemask <command> [arguments]``: the command's ``main`` with the rest of the arguments (sys.argv[0]
    becomes "freemask <command>", which argparse shows as the program and the resume hint repeats)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(usage(program), file=sys.stderr)
        return 2
    if args[0] in ("-h", "--help"):
        print(usage(program))
        return 0
    if args[0] == "--version":
        print(f"{PROGRAM} {version()}")
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        close = difflib.get_close_matches(name, COMMANDS, n=1)
        suggestion = f"did you mean {close[0]}?" if close else f"`{program} --help` lists the commands"
        print(f"error: unknown command '{name}'; {suggestion}", file=sys.stderr)
        return 2
    from importlib import import_module

    sys.argv[:] = [f"{program} {name}", *rest]
    return import_module(f"{__name__}.{COMMANDS[name].module}").main(rest)
