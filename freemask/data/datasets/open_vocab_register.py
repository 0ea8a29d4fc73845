"""Registration of the open-vocabulary splits: each ``all`` / ``base`` / ``novel`` split and its stage-1 twin
``<name>_classification`` (records from the split's label counts), with the metadata of
:meth:`OpenVocabSplit.metadata`.

Lazy like every builtin dataset: nothing is read at registration, paths in the metadata are functions of
``$DETECTRON2_DATASETS`` evaluated on access, and a loader that finds a prepared file missing names the command that
writes it (``hint``).
"""

import functools
import os
from typing import Callable, Dict, List, Mapping, Tuple

from ..catalog import DatasetCatalog, MetadataCatalog
from ..errors import DatasetError
from ..loading.listing_cache import list_files
from .classification import full_task_classification_records, load_classification_records
from .open_vocab import KINDS, OpenVocabSplit, kind_suffix
from .panoptic import ADE_LAYOUT_SPLITS, load_ade_layout
from .sem_seg import load_sem_seg

PathFn = Callable[[], str]


def register_open_vocab_split(
    name: str,
    kind: str,
    split: OpenVocabSplit,
    load: Callable[[], List[dict]],
    paths: Mapping[str, PathFn],
    evaluator_type: str,
    hint: str,
    image_ext: str = ".jpg",
    full_task_stage1: bool = False,
) -> None:
    """Register ``name`` (records of ``load``) and ``name + "_classification"`` (one record per image and class of
    ``paths["sem_seg_root"]``'s label counts, and with ``full_task_stage1`` one per thing segment and one per segment
    of ``load``'s panoptic records, each naming its task: FreeSeg's COCO full-task base split); a name already
    registered is left as it is (COCO-Stuff's full training split is the FreeMask one)."""
    meta = split.metadata(kind)
    if name not in DatasetCatalog:
        DatasetCatalog.register(name, load)
        MetadataCatalog.get(name).set(evaluator_type=evaluator_type, **meta).set_lazy(**paths)
    stage1 = f"{name}_classification"
    if stage1 not in DatasetCatalog:
        load_stage1 = functools.partial(
            _load_stage1, paths["image_root"], paths["sem_seg_root"], len(meta["stuff_classes"]), image_ext, hint
        )
        if full_task_stage1:
            load_stage1 = functools.partial(_load_full_task_stage1, load_stage1, load)
        DatasetCatalog.register(stage1, load_stage1)
        MetadataCatalog.get(stage1).set(evaluator_type="classification", **meta).set_lazy(
            image_root=paths["image_root"], sem_seg_root=paths["sem_seg_root"]
        )


def _load_stage1(image_root: PathFn, sem_seg_root: PathFn, num_classes: int, image_ext: str, hint: str) -> List[dict]:
    return load_classification_records(image_root(), sem_seg_root(), num_classes, image_ext, hint)


def _load_full_task_stage1(
    load_semantic: Callable[[], List[dict]], load_panoptic: Callable[[], List[dict]]
) -> List[dict]:
    return full_task_classification_records(load_semantic(), load_panoptic())


def load_prepared_sem_seg(image_root: str, mask_root: str, hint: str, image_ext: str = ".jpg") -> List[dict]:
    """Semantic records of a prepared split whose image folder may hold more images than the split (VOC's
    JPEGImages, or a ``_base`` split of COCO): one record per mask, its image required. A missing folder or image is
    one DatasetError line naming it and ``hint``."""
    for folder, what in ((image_root, "image"), (mask_root, "prepared mask")):
        if not os.path.isdir(folder):
            raise DatasetError(f"{what} folder not found: {folder}; {hint}")
    stems = sorted(n[:-4] for n in list_files(mask_root) if n.endswith(".png") and not n.startswith("."))
    if not stems:
        raise DatasetError(f"no masks in {mask_root}; the split is empty — {hint}")
    images = set(list_files(image_root))  # one listing, not one stat per mask (118k for COCO)
    records = []
    for stem in stems:
        image = os.path.join(image_root, stem + image_ext)
        if stem + image_ext not in images:
            raise DatasetError(f"{os.path.join(mask_root, stem + '.png')} has no image {image}; {hint}")
        mask = os.path.join(mask_root, stem + ".png")
        records.append({"file_name": image, "sem_seg_file_name": mask, "reduce_zero_label": False})
    return records


def load_full_sem_seg(image_root: str, mask_root: str, hint: str, image_ext: str = ".jpg") -> List[dict]:
    """Semantic records pairing every image with its mask (:func:`load_sem_seg`), a missing mask folder naming
    ``hint``."""
    if not os.path.isdir(mask_root):
        raise DatasetError(f"prepared mask folder not found: {mask_root}; {hint}")
    return load_sem_seg(image_root, mask_root, image_ext, ".png", reduce_zero_label=False)


# ------------------------------------------------------------------------------------------------ ADE20K's layout
def ade_layout_paths(short: str, folder: str, kind: str) -> Dict[str, Tuple[str, ...]]:
    """Relative paths of one split of an ADE-layout tree (``short`` train | val, ``folder`` training | validation):
    FreeSeg's ``register_ade20k_all_data.py`` names, with the instance JSON of the split itself (FreeSeg's
    ``_base`` / ``_novel`` sets name the string "_base" / "_novel" as their instance file)."""
    sfx = kind_suffix(kind)
    return {
        "image_root": ("images", folder),
        "sem_seg_root": ("annotations_detectron2", folder + sfx),
        "panoptic_root": (f"ade20k_panoptic_{short}{sfx}",),
        "panoptic_json": (f"ade20k_panoptic_{short}{sfx}.json",),
        "json_file": (f"ade20k_instance_{short}{sfx}.json",),
    }


def register_open_vocab_ade_layout(
    prefix: str, root: Callable[..., str], split: OpenVocabSplit, evaluator_type: str, hint: str
) -> None:
    """Register ``<prefix>_{train,val}[_base|_novel]`` (all-task records: panoptic + semantic maps, instance JSON
    in the metadata) and their ``_classification`` twins for a tree laid out as ADE20K, rooted at ``root(*parts)``."""
    for short, folder in ADE_LAYOUT_SPLITS.items():
        for kind in KINDS:
            paths = {k: functools.partial(root, *parts) for k, parts in ade_layout_paths(short, folder, kind).items()}
            load = functools.partial(load_ade_layout, paths, split.categories_of(kind), False, hint)
            name = f"{prefix}_{short}{kind_suffix(kind)}"
            register_open_vocab_split(name, kind, split, load, paths, evaluator_type, hint)
