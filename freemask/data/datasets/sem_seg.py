"""Any pair of folders (images, masks) as a semantic-segmentation dataset, paired by file stem.

Registration is lazy: ``register_sem_seg`` stores a loader in ``DatasetCatalog`` and touches no disk; the folders
are listed when the dataset is first used, so a missing folder is reported by the run that needs it.
"""

import functools
import os
from typing import Callable, Dict, List, Mapping, Optional, Sequence

from ..catalog import DatasetCatalog, MetadataCatalog
from ..errors import DatasetError
from ..loading.listing_cache import list_files

# The label of unlabelled pixels in prepared masks (detectron2's and MMSegmentation's 255), the one constant of it.
IGNORE_LABEL = 255
# How many unmatched file names an error message shows before "...".
_SHOWN = 3


def _files_by_stem(folder: str, ext: str, what: str) -> Dict[str, str]:
    if not os.path.isdir(folder):
        raise DatasetError(
            f"{what} folder not found: {folder}; check the dataset path (DETECTRON2_DATASETS) or prepare the dataset"
        )
    prefix = os.path.join(folder, "")  # prefix + name: DirEntry.path, os.path.join(folder, name)
    return {name[: -len(ext)]: prefix + name for name in list_files(folder) if name.endswith(ext)}


def load_sem_seg(
    image_root: str,
    mask_root: str,
    image_ext: str = ".jpg",
    mask_ext: str = ".png",
    reduce_zero_label: bool = False,
) -> List[dict]:
    """Records ``{"file_name", "sem_seg_file_name", "reduce_zero_label"}`` of every image with a mask of the same
    stem, sorted by stem. Masks without an image are ignored (a filtered synthetic set may keep extra masks); an
    image without a mask is an error, since training on it silently would skip data the user expects."""
    images = _files_by_stem(image_root, image_ext, "image")
    masks = _files_by_stem(mask_root, mask_ext, "mask")
    if not images:
        raise DatasetError(
            f"no '*{image_ext}' images in {image_root}; the split is empty — check the path and the extension"
        )
    missing = sorted(set(images) - set(masks))
    if missing:
        shown = ", ".join(s + image_ext for s in missing[:_SHOWN]) + (", ..." if len(missing) > _SHOWN else "")
        raise DatasetError(
            f"{len(missing)} of {len(images)} images in {image_root} have no '*{mask_ext}' mask in {mask_root} "
            f"({shown}); add the masks or remove those images"
        )
    return [
        {"file_name": images[stem], "sem_seg_file_name": masks[stem], "reduce_zero_label": reduce_zero_label}
        for stem in sorted(images)
    ]


def default_palette(num_classes: int) -> List[List[int]]:
    """A deterministic, well-separated colour per class (the PASCAL VOC bit-interleaving palette, from index 1 so
    no class is black, the colour of padding)."""
    colors = []
    for index in range(1, num_classes + 1):
        rgb, value = [0, 0, 0], index
        for shift in range(7, -1, -1):
            for channel in range(3):
                rgb[channel] |= ((value >> channel) & 1) << shift
            value >>= 3
        colors.append(rgb)
    return colors


def register_lazy_splits(
    splits: Mapping[str, str],
    load: Callable[[str], List[dict]],
    stuff_classes: Sequence[str],
    stuff_colors: Sequence[Sequence[int]],
    ignore_label: int = IGNORE_LABEL,
) -> None:
    """Register ``name -> load(split)`` for every ``(name, split)`` of a builtin dataset; names already registered
    are left as they are, so registering twice is harmless."""
    for name, split in splits.items():
        if name not in DatasetCatalog:
            DatasetCatalog.register(name, functools.partial(load, split))
            set_sem_seg_metadata(name, stuff_classes, stuff_colors, ignore_label=ignore_label)


def set_sem_seg_metadata(
    name: str,
    stuff_classes: Sequence[str],
    stuff_colors: Optional[Sequence[Sequence[int]]] = None,
    ignore_label: int = IGNORE_LABEL,
    **paths: str,
) -> None:
    """The metadata every semantic-segmentation dataset carries (``paths``: image_root, sem_seg_root when known)."""
    if stuff_colors is not None and len(stuff_colors) != len(stuff_classes):
        raise ValueError(f"dataset '{name}': {len(stuff_colors)} colours for {len(stuff_classes)} classes")
    MetadataCatalog.get(name).set(
        evaluator_type="sem_seg",
        stuff_classes=list(stuff_classes),
        stuff_colors=[list(c) for c in stuff_colors]
        if stuff_colors is not None
        else default_palette(len(stuff_classes)),
        ignore_label=ignore_label,
        **paths,
    )


def register_sem_seg(
    name: str,
    image_root: str,
    mask_root: str,
    *,
    stuff_classes: Sequence[str],
    stuff_colors: Optional[Sequence[Sequence[int]]] = None,
    ignore_label: int = IGNORE_LABEL,
    image_ext: str = ".jpg",
    mask_ext: str = ".png",
    reduce_zero_label: bool = False,
) -> None:
    """Register ``name`` in DatasetCatalog (loaded on first use) and its metadata in MetadataCatalog."""
    DatasetCatalog.register(name, lambda: load_sem_seg(image_root, mask_root, image_ext, mask_ext, reduce_zero_label))
    set_sem_seg_metadata(name, stuff_classes, stuff_colors, ignore_label, image_root=image_root, sem_seg_root=mask_root)
