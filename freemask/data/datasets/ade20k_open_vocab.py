"""ADE20K-150 with FreeSeg's seen/unseen split (135 seen / 15 unseen): ``ade20k_all_{train,val}[_base|_novel]``
(panoptic + semantic + instance, under the names of bytedance/FreeSeg's mask2former/data/datasets/
register_ade20k_all_data.py, which its datasets/__init__.py never imports) and their ``_classification`` twins, with
FreeSeg's class names (``meta/ade20k_150_freeseg.json``: CLIP's prompts are built from them).

``datasets/prepare_ade20k_open_vocab.py`` writes the files under ``ADEChallengeData2016/`` (layout in
``open_vocab_register.ade_layout_paths``); the full splits read Mask2Former's panoptic / instance files
(``prepare_ade20k_panoptic.py``) and ``annotations_detectron2/``.
"""

from ...commands import hint
from .ade20k_panoptic import ade_path
from .open_vocab import open_vocab_split
from .open_vocab_register import register_open_vocab_ade_layout

_HINT = f"run {hint('prepare', 'ade20k-open-vocab')} (see datasets/README.md, FreeSeg section)"


def register_ade20k_open_vocab() -> None:
    """Register the ADE20K open-vocabulary splits (no disk access)."""
    register_open_vocab_ade_layout("ade20k_all", ade_path, open_vocab_split("ade20k_150"), "ade20k_panoptic_seg", _HINT)
