"""The two inputs of re-sampling, from folders (as the release's script takes them) or from registered datasets.

Real masks are keyed by their file stem; synthetic pairs by ``(real stem, seed)`` parsed from
``<real_stem>_seed_<s>``, the naming of the FreeMask synthetic sets, so the seeds of each real mask are discovered
from the file names rather than assumed to be 42..61.
"""

import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from ..data.catalog import DatasetCatalog, MetadataCatalog
from ..data.datasets.synthetic import IMAGES_DIR, parse_synthetic_stem
from ..data.errors import DatasetError

_SHOWN = 3


def _shown(names: Sequence[str]) -> str:
    return ", ".join(names[:_SHOWN]) + (", ..." if len(names) > _SHOWN else "")


@dataclass(frozen=True)
class RealMasks:
    """Real training masks: ``paths[stem]``, read with the label convention of ``reduce_zero_label`` /
    ``ignore_label``; ``num_classes`` is known when they come from a registered dataset."""

    source: str
    paths: dict[str, str]
    reduce_zero_label: bool
    ignore_label: int
    num_classes: int | None = None


@dataclass(frozen=True)
class SyntheticPairs:
    """Synthetic ``(image, mask)`` paths by real stem and seed; ``root`` is the synthetic root (the folder holding
    ``images/``) where the resampled split looks for its manifest."""

    source: str
    root: str
    pairs: dict[str, dict[int, tuple[str, str]]]

    @property
    def num_pairs(self) -> int:
        return sum(len(s) for s in self.pairs.values())

    def seeds(self) -> dict[str, list[int]]:
        return {stem: sorted(by_seed) for stem, by_seed in self.pairs.items()}

    def without(self, stems: Sequence[str]) -> "SyntheticPairs":
        drop = set(stems)
        return SyntheticPairs(self.source, self.root, {s: p for s, p in self.pairs.items() if s not in drop})


def _files(folder: str, ext: str, what: str, hint: str) -> dict[str, str]:
    """``stem -> path`` of the files ending in ``ext`` directly in ``folder``."""
    if not os.path.isdir(folder):
        raise DatasetError(f"{what} folder not found: {folder}; {hint}")
    with os.scandir(folder) as entries:
        return {e.name[: -len(ext)]: e.path for e in entries if e.name.endswith(ext) and e.is_file()}


def real_masks_from_folder(
    folder: str, mask_ext: str = ".png", reduce_zero_label: bool = False, ignore_label: int = 255
) -> RealMasks:
    """Every ``*<mask_ext>`` file of ``folder`` (the release's ``--real-mask-path``)."""
    paths = _files(folder, mask_ext, "real mask", "pass the folder of the real training masks")
    if not paths:
        raise DatasetError(f"no '*{mask_ext}' masks in {folder}; pass the folder of the real training masks")
    return RealMasks(folder, paths, reduce_zero_label, ignore_label)


def real_masks_from_dataset(name: str) -> RealMasks:
    """The masks of the registered dataset ``name``, with its label convention and class count."""
    records = DatasetCatalog.get(name)
    if not records:
        raise DatasetError(f"dataset '{name}' has no records; check its folders")
    metadata = MetadataCatalog.get(name)
    reduce = {bool(r.get("reduce_zero_label", False)) for r in records}
    if len(reduce) > 1:
        raise DatasetError(f"dataset '{name}' mixes raw and prepared masks; prepare all of them or none")
    paths: dict[str, str] = {}
    for record in records:
        path = record["sem_seg_file_name"]
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem in paths:
            raise DatasetError(
                f"dataset '{name}': masks {paths[stem]} and {path} share the stem '{stem}', so synthetic files "
                f"'{stem}_seed_<s>' cannot tell them apart; rename one"
            )
        paths[stem] = path
    classes = metadata.get("stuff_classes")
    return RealMasks(
        name, paths, reduce.pop(), int(metadata.get("ignore_label", 255)), len(classes) if classes else None
    )


def synthetic_from_folders(
    image_dir: str, mask_dir: str, image_ext: str = ".jpg", mask_ext: str = ".png"
) -> SyntheticPairs:
    """Pairs ``<image_dir>/<stem>_seed_<s><image_ext>`` + ``<mask_dir>/<same stem><mask_ext>``; other files in
    ``image_dir`` are ignored, an image without its mask is an error (an unfinished ``filter_syn.py`` run?)."""
    hint = "pass the synthetic images folder (e.g. ADE20K_Synthetic/images)"
    images = _files(image_dir, image_ext, "synthetic image", hint)
    masks = _files(mask_dir, mask_ext, "synthetic mask", "pass the synthetic masks folder (annotations_filtered/)")
    pairs: dict[str, dict[int, tuple[str, str]]] = defaultdict(dict)
    missing = []
    for stem, image in images.items():
        parsed = parse_synthetic_stem(stem)
        if parsed is None:
            continue
        if stem not in masks:
            missing.append(os.path.basename(image))
            continue
        pairs[parsed[0]][parsed[1]] = (image, masks[stem])
    if missing:
        raise DatasetError(
            f"{len(missing)} synthetic images in {image_dir} have no '*{mask_ext}' mask in {mask_dir} "
            f"({_shown(sorted(missing))}); finish `python tools/filter_syn.py` or pass the matching masks folder"
        )
    if not pairs:
        raise DatasetError(f"no synthetic images named '<real_stem>_seed_<int>{image_ext}' in {image_dir}; {hint}")
    return SyntheticPairs(image_dir, os.path.dirname(os.path.abspath(image_dir)), dict(pairs))


def synthetic_from_dataset(name: str) -> SyntheticPairs:
    """Pairs of a registered synthetic split (``*_syn_*`` or ``*_syn_filtered_*``); its root is the folder above
    the images folder."""
    records = DatasetCatalog.get(name)
    if not records:
        raise DatasetError(f"dataset '{name}' has no records; check its folders")
    pairs: dict[str, dict[int, tuple[str, str]]] = defaultdict(dict)
    roots = set()
    for record in records:
        image = record["file_name"]
        parsed = parse_synthetic_stem(os.path.splitext(os.path.basename(image))[0])
        if parsed is None:
            raise DatasetError(
                f"dataset '{name}': {image} is not named '<real_stem>_seed_<int>'; not a synthetic split"
            )
        pairs[parsed[0]][parsed[1]] = (image, record["sem_seg_file_name"])
        roots.add(os.path.dirname(os.path.dirname(os.path.abspath(image))))
    if len(roots) != 1 or os.path.basename(os.path.dirname(records[0]["file_name"])) != IMAGES_DIR:
        raise DatasetError(
            f"dataset '{name}' is not one synthetic root with an {IMAGES_DIR}/ folder; "
            "use --syn-img-path/--syn-mask-path"
        )
    return SyntheticPairs(name, roots.pop(), dict(pairs))
