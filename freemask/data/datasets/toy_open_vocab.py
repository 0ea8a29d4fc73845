"""The toy dataset's open-vocabulary splits (unseen: person, a thing, and road, a stuff class), in the ADE layout.

``tools/make_toy_dataset.py`` writes them by running the same preparation as ADE20K on the toy's panoptic output
(freemask/toy/generator_open_vocab.py). Registered: ``toy_ov_{train,val}[_base|_novel]`` (all-task records)
and their ``_classification`` twins; ``toy_ov_train_base`` names the seen sky, grass, building, car (0..3) and
``toy_ov_val`` all six classes with ``trainable_flag`` [1, 1, 0, 1, 1, 0].
"""

from ...commands import hint
from .open_vocab import open_vocab_split
from .open_vocab_register import register_open_vocab_ade_layout
from .toy_panoptic import toy_path

_HINT = f"generate it with {hint('make-toy')}; it writes the open-vocabulary files too"


def register_toy_open_vocab() -> None:
    """Register the toy open-vocabulary splits (no disk access)."""
    register_open_vocab_ade_layout("toy_ov", toy_path, open_vocab_split("toy_6"), "coco_panoptic_seg", _HINT)
