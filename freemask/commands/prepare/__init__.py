"""``freemask prepare <dataset>``: convert a dataset's raw annotations into the files its loaders read, once.

One module here per dataset (its docstring is its ``--help``, its ``main(argv) -> int`` runs the conversion through
``freemask.data.prepare.cli.prepare_main``); ``datasets/prepare_<module>.py`` is its launcher in a checkout.
:data:`DATASETS` is a static table (dataset name -> module, one-line summary), so ``freemask prepare --help`` and
:func:`launcher` (which names the checkout script in messages) import neither torch nor any dataset module. Like the
parent package, this ``__init__`` imports nothing of freemask, so any module may name a preparation in a message.
"""

import difflib
import sys
from typing import Dict, NamedTuple, Optional, Sequence

# How the parent dispatcher names this command ("freemask prepare", or "python -m freemask prepare" as sys.argv[0]);
# spelt here, not imported, because the parent's hint() imports this package.
COMMAND = "freemask prepare"


class Preparation(NamedTuple):
    module: str  # under freemask.commands.prepare; the checkout launcher is datasets/prepare_<module>.py
    summary: str  # one line for `freemask prepare --help`


DATASETS: Dict[str, Preparation] = {
    "ade20k-sem-seg": Preparation("ade20k_sem_seg", "ADE20K masks -> annotations_detectron2/ (0..149, 255)"),
    "ade20k-panoptic": Preparation("ade20k_panoptic", "ADE20K panoptic and instance files (Mask2Former's)"),
    "ade20k-open-vocab": Preparation("ade20k_open_vocab", "FreeSeg's ADE20K seen/unseen splits (135 + 15 classes)"),
    "cityscapes-sem-seg": Preparation("cityscapes_sem_seg", "Cityscapes label ids -> train ids (0..18, 255)"),
    "coco-full-task": Preparation("coco_full_task", "FreeSeg's COCO full task: panoptic, semantic, instance"),
    "coco-panoptic-sem-seg": Preparation("coco_panoptic_sem_seg", "COCO panoptic's semantic maps (0..132, 255)"),
    "coco-stuff-10k-sem-seg": Preparation("coco_stuff_10k_sem_seg", "COCO-Stuff-10k .mat -> PNG maps (0..170, 255)"),
    "coco-stuff-164k-sem-seg": Preparation(
        "coco_stuff_164k_sem_seg", "COCO-Stuff-164K stuffthingmaps -> stuffthingmaps_detectron2/ (0..170, 255)"
    ),
    "coco-stuff-164k-open-vocab": Preparation(
        "coco_stuff_164k_open_vocab", "FreeSeg's COCO-Stuff seen/unseen splits (156 + 15 classes)"
    ),
    "synthetic-open-vocab": Preparation("synthetic_open_vocab", "synthetic masks in the seen-class vocabulary"),
    "voc-sem-seg": Preparation("voc_sem_seg", "FreeSeg's PASCAL VOC 2012 splits (15 + 5 classes)"),
}


def launcher(dataset: str) -> str:
    """The checkout script of ``dataset``'s preparation, relative to the repository root (KeyError when unknown)."""
    return f"datasets/prepare_{DATASETS[dataset].module}.py"


def usage(program: str) -> str:
    """``freemask prepare --help``: the datasets and their summaries."""
    width = max(map(len, DATASETS))
    lines = [f"usage: {program} <dataset> [arguments]  ({program} <dataset> --help for its own)", "", "datasets:"]
    lines += [f"  {name:<{width}}  {preparation.summary}" for name, preparation in DATASETS.items()]
    lines += ["", "options:", "  -h, --help  this list"]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``freemask prepare <dataset> [arguments]``: the dataset's ``main`` with the rest of the arguments (sys.argv[0],
    "freemask prepare" as the parent command set it, becomes "freemask prepare <dataset>" for argparse)."""
    args = list(sys.argv[1:] if argv is None else argv)
    program = sys.argv[0] if sys.argv[0].endswith(COMMAND) else COMMAND
    if not args:
        print(usage(program), file=sys.stderr)
        return 2
    if args[0] in ("-h", "--help"):
        print(usage(program))
        return 0
    name, rest = args[0], args[1:]
    if name not in DATASETS:
        close = [d for d in DATASETS if d.startswith(name)] or difflib.get_close_matches(name, DATASETS, n=1)
        suggestion = f"did you mean {' or '.join(close)}?" if close else f"`{program} --help` lists the datasets"
        print(f"error: unknown dataset '{name}'; {suggestion}", file=sys.stderr)
        return 2
    from importlib import import_module

    sys.argv[:] = [f"{program} {name}", *rest]
    return import_module(f"{__name__}.{DATASETS[name].module}").main(rest)
