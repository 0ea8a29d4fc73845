"""The toy dataset's open-vocabulary files: ADE20K's open-vocabulary preparation run on the toy's ADE-layout tree.

Why the same code as ADE20K: the toy is a small ADE-layout dataset (raw masks with 0 = unlabeled, Mask2Former's
panoptic and instance files from ``generator_panoptic``), so running the real preparation on it tests that
preparation end to end and gives the open-vocabulary toy runs the files a real dataset has. Unseen classes: person
(a thing) and road (a stuff class), ``meta/open_vocab_splits.json``. Only adds files under
``<root>/toy/ADEChallengeData2016/`` (``annotations_detectron2/``, ``*_base`` / ``*_novel`` panoptic, instance and
semantic files, label counts) and the seen-class twins of the synthetic masks under ``<root>/toy/ADE20K_Synthetic/``
(``annotations_base/``, for ``toy_syn_sem_seg_train_base``), then ``open_vocab_meta.json`` last (= complete).
"""

import os
from dataclasses import asdict

from ..commands import hint as command_hint
from ..data.datasets.open_vocab import open_vocab_split
from ..data.datasets.synthetic_open_vocab import SYNTHETIC_VOCAB_ROOTS
from ..data.datasets.toy import REAL_DIR
from ..data.errors import DatasetError
from ..data.prepare.open_vocab_datasets import prepare_ade_layout_open_vocab
from ..data.prepare.synthetic_open_vocab import prepare_synthetic_root
from ..utils.atomic import atomic_write_json
from .generator_panoptic import marker_is_current
from .layout import ToyParams

OPEN_VOCAB_FORMAT = 2  # 2: the synthetic masks' seen-class twins


def generate_toy_open_vocab(root: str, params: ToyParams = ToyParams(), force: bool = False) -> bool:
    """Write the open-vocabulary files of the toy under ``<root>/toy`` (its panoptic files must exist); False
    (nothing written) when they are complete for ``params``."""
    base = os.path.join(root, "toy", REAL_DIR)
    marker = os.path.join(base, "open_vocab_meta.json")
    meta = {"open_vocab_format": OPEN_VOCAB_FORMAT, **asdict(params)}
    if marker_is_current(marker, meta, force):
        return False
    hint = f"regenerate the toy with {command_hint('make-toy', '--force')}"
    result = prepare_ade_layout_open_vocab(base, open_vocab_split("toy_6"), force=True, progress=False, hint=hint)
    syn = SYNTHETIC_VOCAB_ROOTS["toy_6"]
    result.add(prepare_synthetic_root(os.path.join(root, syn.folder), syn, force=True, progress=False))
    if result.errors:
        raise DatasetError(f"{result.errors[0]} ({hint})")
    atomic_write_json(marker, meta, indent=None, final_newline=False)
    return True
