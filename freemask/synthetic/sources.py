"""The inputs of the FreeMask tools, each named on the command line as a registered dataset or as folders (as the
release's scripts take them), resolved here for the filter and the re-sampler alike.

A :class:`SourceSpec` is what the user named; it lists

- :meth:`SourceSpec.pairs`: image/mask records (:class:`MaskSource`), the filter's real and synthetic inputs;
- :meth:`SourceSpec.real_masks`: the real masks by file stem (:class:`RealMasks`), whose hardness re-sampling ranks;
- :meth:`SourceSpec.synthetic_pairs`: synthetic pairs by ``(real stem, seed)`` (:class:`SyntheticPairs`), parsed
  from ``<real_stem>_seed_<s>``, the naming of the FreeMask synthetic sets, so the seeds of each real mask are
  discovered from the file names rather than assumed to be 42..61.
"""

import os
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..commands import hint as command_hint
from ..data.catalog import DatasetCatalog, MetadataCatalog
from ..data.datasets.sem_seg import load_sem_seg
from ..data.datasets.synthetic import IMAGES_DIR, parse_synthetic_stem
from ..data.errors import DatasetError
from ..data.loading.listing_cache import list_files

_SHOWN = 3


def short_list(names: Sequence[str]) -> str:
    """The first few ``names`` for a message, then "..."."""
    names = list(names)
    return ", ".join(names[:_SHOWN]) + (", ..." if len(names) > _SHOWN else "")


@dataclass(frozen=True)
class MaskSource:
    """Records ``{"file_name", "sem_seg_file_name", "reduce_zero_label"}`` and the label conventions of one input.

    ``description`` identifies the input in ``class_loss.json`` and in the filter's settings; ``class_names`` is
    None for folders, which carry no class list.
    """

    description: str
    records: List[dict]
    ignore_label: int
    class_names: Optional[List[str]]


@dataclass(frozen=True)
class RealMasks:
    """Real training masks: ``paths[stem]``, read with the label convention of ``reduce_zero_label`` /
    ``ignore_label``; ``num_classes`` is known when they come from a registered dataset."""

    source: str
    paths: Dict[str, str]
    reduce_zero_label: bool
    ignore_label: int
    num_classes: Optional[int] = None


@dataclass(frozen=True)
class SyntheticPairs:
    """Synthetic ``(image, mask)`` paths by real stem and seed; ``root`` is the synthetic root (the folder holding
    ``images/``) where the resampled split looks for its manifest."""

    source: str
    root: str
    pairs: Dict[str, Dict[int, Tuple[str, str]]]

    @property
    def num_pairs(self) -> int:
        return sum(len(s) for s in self.pairs.values())

    def seeds(self) -> Dict[str, List[int]]:
        return {stem: sorted(by_seed) for stem, by_seed in self.pairs.items()}

    def without(self, stems: Sequence[str]) -> "SyntheticPairs":
        drop = set(stems)
        return SyntheticPairs(self.source, self.root, {s: p for s, p in self.pairs.items() if s not in drop})


@dataclass(frozen=True)
class SourceSpec:
    """One input as the user named it: a registered ``dataset``, or folders with their conventions (raw ADE20K-style
    masks with ``reduce_zero_label``, ``ignore_label``, file extensions); a registered dataset knows its own."""

    dataset: Optional[str] = None
    image_dir: Optional[str] = None
    mask_dir: Optional[str] = None
    reduce_zero_label: bool = False
    ignore_label: int = 255
    image_ext: str = ".jpg"
    mask_ext: str = ".png"

    @classmethod
    def from_args(cls, args: Any, side: str, ignore_label: int = 255) -> "SourceSpec":
        """The ``--<side>-dataset`` / ``--<side>-img-path`` / ``--<side>-mask-path`` flags of the tools, with the
        shared ``--reduce-zero-label``, ``--image-ext`` and ``--mask-ext`` (a flag a tool lacks is None)."""
        return cls(
            getattr(args, f"{side}_dataset", None),
            getattr(args, f"{side}_img_path", None),
            getattr(args, f"{side}_mask_path", None),
            args.reduce_zero_label,
            ignore_label,
            args.image_ext,
            args.mask_ext,
        )

    @property
    def description(self) -> Optional[str]:
        """How the input is named in ``class_loss.json`` and in the filter's settings, known before it is listed;
        None when no dataset or image folder is given."""
        if self.dataset:
            return self.dataset
        if self.image_dir:
            return folder_description(self.image_dir, self.mask_dir)
        return None

    def pairs(self) -> MaskSource:
        """Image/mask records: the dataset's (its loader lists the files now), or every ``<stem><image_ext>`` of
        ``image_dir`` with ``<stem><mask_ext>`` in ``mask_dir`` (an image without a mask is an error naming it)."""
        if self.dataset:
            records = _dataset_records(self.dataset)
            meta = MetadataCatalog.get(self.dataset)
            return MaskSource(self.dataset, records, int(meta.get("ignore_label", 255)), list(meta.stuff_classes))
        records = load_sem_seg(
            self.image_dir, self.mask_dir, self.image_ext, self.mask_ext, reduce_zero_label=self.reduce_zero_label
        )
        return MaskSource(folder_description(self.image_dir, self.mask_dir), records, self.ignore_label, None)

    def real_masks(self) -> RealMasks:
        """The dataset's masks with its label convention and class count, or every ``*<mask_ext>`` file of
        ``mask_dir`` (the release's ``--real-mask-path``; no image is needed)."""
        if self.dataset:
            return _real_masks_from_dataset(self.dataset)
        paths = _files(self.mask_dir, self.mask_ext, "real mask", "pass the folder of the real training masks")
        if not paths:
            raise DatasetError(
                f"no '*{self.mask_ext}' masks in {self.mask_dir}; pass the folder of the real training masks"
            )
        return RealMasks(self.mask_dir, paths, self.reduce_zero_label, self.ignore_label)

    def synthetic_pairs(self) -> SyntheticPairs:
        """Pairs of a registered synthetic split (``*_syn_*`` or ``*_syn_filtered_*``; its root is the folder above
        the images folder), or ``<image_dir>/<stem>_seed_<s><image_ext>`` + ``<mask_dir>/<same stem><mask_ext>``."""
        if self.dataset:
            return _synthetic_from_dataset(self.dataset)
        return _synthetic_from_folders(self.image_dir, self.mask_dir, self.image_ext, self.mask_ext)


def folder_description(image_dir: str, mask_dir: str) -> str:
    """How a pair of folders is named in ``class_loss.json`` and in the filter's settings."""
    return f"{os.path.abspath(image_dir)} | {os.path.abspath(mask_dir)}"


def _dataset_records(name: str) -> List[dict]:
    records = DatasetCatalog.get(name)
    if not records:
        raise DatasetError(f"dataset '{name}' has no images; check its folders")
    return records


def _files(folder: str, ext: str, what: str, hint: str) -> Dict[str, str]:
    """``stem -> path`` of the files ending in ``ext`` directly in ``folder``."""
    if not os.path.isdir(folder):
        raise DatasetError(f"{what} folder not found: {folder}; {hint}")
    prefix = os.path.join(folder, "")
    return {name[: -len(ext)]: prefix + name for name in list_files(folder) if name.endswith(ext)}


def _real_masks_from_dataset(name: str) -> RealMasks:
    records = _dataset_records(name)
    metadata = MetadataCatalog.get(name)
    reduce = {bool(r.get("reduce_zero_label", False)) for r in records}
    if len(reduce) > 1:
        raise DatasetError(f"dataset '{name}' mixes raw and prepared masks; prepare all of them or none")
    paths: Dict[str, str] = {}
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


def _synthetic_from_folders(image_dir: str, mask_dir: str, image_ext: str, mask_ext: str) -> SyntheticPairs:
    """Other files in ``image_dir`` are ignored; an image without its mask is an error (an unfinished
    ``filter_syn.py`` run?)."""
    hint = "pass the synthetic images folder (e.g. ADE20K_Synthetic/images)"
    images = _files(image_dir, image_ext, "synthetic image", hint)
    masks = _files(mask_dir, mask_ext, "synthetic mask", "pass the synthetic masks folder (annotations_filtered/)")
    pairs: Dict[str, Dict[int, Tuple[str, str]]] = defaultdict(dict)
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
            f"({short_list(sorted(missing))}); finish {command_hint('filter')} or pass the matching masks folder"
        )
    if not pairs:
        raise DatasetError(f"no synthetic images named '<real_stem>_seed_<int>{image_ext}' in {image_dir}; {hint}")
    return SyntheticPairs(image_dir, os.path.dirname(os.path.abspath(image_dir)), dict(pairs))


def _synthetic_from_dataset(name: str) -> SyntheticPairs:
    records = _dataset_records(name)
    pairs: Dict[str, Dict[int, Tuple[str, str]]] = defaultdict(dict)
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


def dataset_class_names(name: str) -> List[str]:
    """Classes of a registered dataset from its metadata (no folder is listed)."""
    if name not in DatasetCatalog:
        raise DatasetError(
            f"dataset '{name}' is not registered; registered: {', '.join(sorted(DatasetCatalog.list()))}"
        )
    return list(MetadataCatalog.get(name).stuff_classes)


def check_class_count(name: str, class_names: Sequence[str], num_classes: int, config_file: str) -> None:
    """DatasetError when a registered dataset's classes differ in number from the model's."""
    if len(class_names) != num_classes:
        raise DatasetError(
            f"the model has {num_classes} classes (MODEL.SEM_SEG_HEAD.NUM_CLASSES of {config_file or 'the defaults'})"
            f" but dataset '{name}' has {len(class_names)}; use a config and MODEL.WEIGHTS trained on this dataset"
        )


def model_class_names(sources: Sequence[MaskSource], datasets: Sequence[str], num_classes: int) -> List[str]:
    """Class names for the reports: from an input dataset, else from the first of ``datasets`` registered with the
    right number of classes (the real dataset, the config's training sets), else ``class_<i>``."""
    for source in sources:
        if source.class_names is not None and len(source.class_names) == num_classes:
            return list(source.class_names)
    for name in datasets:
        if name in DatasetCatalog:
            names = MetadataCatalog.get(name).get("stuff_classes")
            if names is not None and len(names) == num_classes:
                return list(names)
    return [f"class_{i}" for i in range(num_classes)]
