"""Synthetic training splits in the FreeMask release layout, and the manifest format of resampled subsets.

A synthetic root (``ADE20K_Synthetic/``, ``COCO_Synthetic/``, ``toy/ADE20K_Synthetic/``) holds
``images/<real_stem>_seed_<s>.jpg`` with masks of the same name in ``annotations/`` (as generated) and
``annotations_filtered/`` (pixels ignored by ``tools/filter_syn.py``), plus ``resampled_manifest.txt`` naming the
pairs ``tools/resample_syn.py`` chose. Three splits per root read these: all pairs, all pairs with filtered masks,
and the manifest's pairs. A manifest replaces the release's copied ``images_resampled/`` folders, which duplicated
hundreds of GB only to repeat hard images.

Manifest format (fixed; tools write it with ``write_manifest``): UTF-8 text, one pair per line,
``<image path>\\t<mask path>``, both relative to the synthetic root; blank lines and lines starting with ``#`` are
ignored; a pair appears at most once (resampling draws without replacement).

The "all" and "filtered" splits also register a compact form (``DatasetCatalog.get_compact``): the same records
in a shared-memory sequence built without a dict per pair, which the training loader keeps.

Registration reads nothing from disk: the root is a function called when a split is loaded, so
``$DETECTRON2_DATASETS`` may change after import.
"""

import os
from collections import defaultdict
from itertools import repeat
from operator import add, itemgetter
from typing import TYPE_CHECKING, Callable, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Set, Tuple

from ...commands import hint as command_hint
from ...utils.atomic import atomic_write_text
from ..catalog import DatasetCatalog, MetadataCatalog
from ..errors import DatasetError
from ..loading.listing_cache import list_files

if TYPE_CHECKING:
    from ..loading.synthetic_records import SyntheticRecords

IMAGES_DIR = "images"
MASKS_DIR = "annotations"
FILTERED_MASKS_DIR = "annotations_filtered"
MANIFEST_NAME = "resampled_manifest.txt"
# Split kinds accepted by register_synthetic_splits.
SPLIT_KINDS = ("all", "filtered", "resampled")

_SEED_MARK = "_seed_"
# Metadata describing where a dataset lives; not shared between a real dataset and its synthetic splits.
_PATH_KEYS = ("name", "image_root", "sem_seg_root")
_SHOWN = 3


def parse_synthetic_stem(stem: str) -> Optional[Tuple[str, int]]:
    """``("<real_stem>", seed)`` for a name ``<real_stem>_seed_<int>``, else None.

    The names of the regular expression ``(?P<real_stem>.+)_seed_(?P<seed>\\d+)`` (full match; ``.`` stops at a
    newline, ``\\d`` is a Unicode decimal digit), at a third of its cost: only the last ``_seed_`` can be followed
    by digits alone, so it is the one split to try (one call per pair: 710k for COCO-Synthetic)."""
    real_stem, mark, seed = stem.rpartition(_SEED_MARK)
    if not mark or not real_stem or not seed.isdecimal() or "\n" in real_stem:
        return None
    return real_stem, int(seed)


def _shown(names: Sequence[str]) -> str:
    return ", ".join(names[:_SHOWN]) + (", ..." if len(names) > _SHOWN else "")


def _names_in(folder: str, what: str, hint: str) -> List[str]:
    if not os.path.isdir(folder):
        raise DatasetError(f"{what} folder not found: {folder}; {hint}")
    return list_files(folder)


def _sorted_by_stem_and_seed(images: List[Tuple[str, int, str]]) -> List[Tuple[str, int, str]]:
    """``(real_stem, seed, name stem)`` triples in tuple order, by three stable sorts on one field each, last field
    first: each compares plain strings or ints (CPython's fast paths), at a third of the cost of sorting the tuples
    (1.7 s for 710k). Same order: tuples compare field by field, and stable sorts keep the earlier fields' ties."""
    images = sorted(images, key=itemgetter(2))
    images.sort(key=itemgetter(1))
    images.sort(key=itemgetter(0))
    return images


def _record(image: str, mask: str, real_stem: str, seed: int, reduce_zero_label: bool) -> dict:
    return {
        "file_name": image,
        "sem_seg_file_name": mask,
        "reduce_zero_label": reduce_zero_label,
        "real_stem": real_stem,
        "seed": seed,
    }


class _Listing(NamedTuple):
    """The pairs of a synthetic split, sorted by (real stem, seed): ``(real_stem, seed, stem)`` triples, and the
    folders (as prefixes ending in a separator) and extensions their file names are made of."""

    pairs: List[Tuple[str, int, str]]
    image_prefix: str
    mask_prefix: str
    image_ext: str
    mask_ext: str


def _list_synthetic(root: str, masks_dir: str, image_ext: str, mask_ext: str, missing_hint: str) -> _Listing:
    """Every ``<root>/images/<real_stem>_seed_<int><image_ext>`` with its mask in ``<root>/<masks_dir>``, sorted;
    other files in images/ are ignored (a release folder may hold previews or lists); an image without a mask is an
    error. Shared by the two forms of a split: ``load_synthetic`` and ``load_synthetic_compact``."""
    image_root, mask_root = os.path.join(root, IMAGES_DIR), os.path.join(root, masks_dir)
    names, cut = _names_in(image_root, "synthetic images", missing_hint), len(image_ext)
    stems = [name[:-cut] for name in names if name.endswith(image_ext)]
    # ``parse_synthetic_stem`` inlined, the same tests on the same split (a call per pair doubled this step's 0.4 s at
    # 710k pairs): ``(real_stem, seed, stem)`` for each stem that function parses.
    images = [
        (parts[0], int(parts[2]), stem)
        for stem in stems
        if (parts := stem.rpartition(_SEED_MARK))[1] and parts[0] and parts[2].isdecimal() and "\n" not in parts[0]
    ]
    del names, stems
    if not images:
        raise DatasetError(
            f"no synthetic images named '<real_stem>_seed_<int>{image_ext}' in {image_root}; {missing_hint}"
        )
    filtered = masks_dir == FILTERED_MASKS_DIR
    fix = (
        f"run {command_hint('filter')} to write the filtered masks"
        if filtered
        else "add the masks or remove those images"
    )
    masks = set(_names_in(mask_root, "synthetic mask", fix if filtered else missing_hint))
    # Every mask there: one C-level pass (half the time of a test per pair in Python); the names only if not.
    everything = masks.issuperset(map(add, map(itemgetter(2), images), repeat(mask_ext)))
    missing = [] if everything else sorted(stem + image_ext for _, _, stem in images if stem + mask_ext not in masks)
    if missing:
        raise DatasetError(
            f"{len(missing)} of {len(images)} synthetic images in {image_root} have no '*{mask_ext}' mask in "
            f"{mask_root} ({_shown(missing)}); {fix}"
        )
    # ``prefix + name`` is ``os.path.join(root, name)`` for a bare file name, at a fifth of its cost.
    image_prefix, mask_prefix = os.path.join(image_root, ""), os.path.join(mask_root, "")
    return _Listing(_sorted_by_stem_and_seed(images), image_prefix, mask_prefix, image_ext, mask_ext)


def load_synthetic(
    root: str,
    masks_dir: str = MASKS_DIR,
    reduce_zero_label: bool = False,
    image_ext: str = ".jpg",
    mask_ext: str = ".png",
    missing_hint: str = "check the dataset path (DETECTRON2_DATASETS)",
) -> List[dict]:
    """Records of every ``<root>/images/<real_stem>_seed_<int><image_ext>`` with its mask in ``<root>/<masks_dir>``,
    sorted by (real stem, seed), with ``real_stem`` and ``seed`` keys. Other files in images/ are ignored (a
    release folder may hold previews or lists); an image without a mask is an error."""
    listing = _list_synthetic(root, masks_dir, image_ext, mask_ext, missing_hint)
    image_prefix, mask_prefix = listing.image_prefix, listing.mask_prefix
    # The dict is ``_record``'s, inline (same keys, same order) to save a call per pair.
    return [
        {
            "file_name": image_prefix + stem + image_ext,
            "sem_seg_file_name": mask_prefix + stem + mask_ext,
            "reduce_zero_label": reduce_zero_label,
            "real_stem": real_stem,
            "seed": seed,
        }
        for real_stem, seed, stem in listing.pairs
    ]


def load_synthetic_compact(
    root: str,
    masks_dir: str = MASKS_DIR,
    reduce_zero_label: bool = False,
    image_ext: str = ".jpg",
    mask_ext: str = ".png",
    missing_hint: str = "check the dataset path (DETECTRON2_DATASETS)",
) -> "SyntheticRecords":
    """``load_synthetic``'s records as a :class:`~..synthetic_records.SyntheticRecords` (item ``i`` equal to its
    ``i``-th dict), built without a dict per pair: what the training loader keeps of a split of 710k pairs."""
    from ..loading.synthetic_records import SyntheticRecords  # loads torch: registering datasets must not (issue 17)

    listing = _list_synthetic(root, masks_dir, image_ext, mask_ext, missing_hint)
    return SyntheticRecords(
        map(itemgetter(2), listing.pairs),
        _SEED_MARK,
        listing.image_prefix,
        listing.mask_prefix,
        image_ext,
        mask_ext,
        reduce_zero_label,
    )


def read_manifest(path: str, root: str) -> List[Tuple[str, str]]:
    """The (image path, mask path) pairs of a manifest, joined to ``root``, in file order.

    Only parses: a missing manifest, a malformed line, an absolute path or a repeated pair is a DatasetError;
    whether the listed files exist is checked by the loader (``load_resampled``)."""
    if not os.path.isfile(path):
        raise DatasetError(
            f"resampled manifest not found: {path}; write it with {command_hint('resample')} "
            f"(hardness-aware re-sampling of the synthetic pairs)"
        )
    pairs: List[Tuple[str, str]] = []
    seen: Dict[Tuple[str, str], int] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.split("\t")
            if len(fields) != 2 or not all(fields):
                raise DatasetError(
                    f"{path}:{number}: expected '<image path><TAB><mask path>', got {line!r}; "
                    f"fix the line or re-run {command_hint('resample')}"
                )
            if any(os.path.isabs(p) for p in fields):
                raise DatasetError(
                    f"{path}:{number}: paths must be relative to {root}, got {line!r}; re-run "
                    f"{command_hint('resample')}"
                )
            pair = (fields[0], fields[1])
            if pair in seen:
                raise DatasetError(
                    f"{path}:{number}: pair {fields[0]} / {fields[1]} already listed on line {seen[pair]}; each "
                    f"pair may appear once (re-sampling draws without replacement) — remove the duplicate"
                )
            seen[pair] = number
            pairs.append((os.path.join(root, pair[0]), os.path.join(root, pair[1])))
    if not pairs:
        raise DatasetError(f"{path} lists no pairs; re-run {command_hint('resample')}")
    return pairs


def write_manifest(path: str, pairs: Iterable[Tuple[str, str]], root: str) -> None:
    """Write ``pairs`` (paths absolute or relative to the current directory, inside ``root``) as a manifest of
    paths relative to ``root``, atomically (``freemask.utils.atomic``): a crash never leaves a half-written
    manifest that a training run would read as a smaller subset."""
    base = os.path.abspath(root)
    lines, seen = [], set()
    for image, mask in pairs:
        pair = tuple(_relative(p, base) for p in (image, mask))
        if pair in seen:
            raise ValueError(f"pair {pair[0]} / {pair[1]} given twice; a manifest lists each pair once")
        seen.add(pair)
        lines.append("\t".join(pair))
    header = "# FreeMask resampled pairs: <image>\\t<mask>, relative to this folder\n"
    atomic_write_text(path, header + "".join(line + "\n" for line in lines))


def _relative(path: str, base: str) -> str:
    absolute = os.path.abspath(path)
    # Stripping the prefix gives relpath's answer for paths inside ``base`` at a third of its cost (400k pairs).
    if absolute.startswith(base + os.sep):
        relative = absolute[len(base) + 1 :].replace(os.sep, "/")
    else:
        relative = os.path.relpath(absolute, base).replace(os.sep, "/")
    if relative == ".." or relative.startswith("../") or any(c in relative for c in "\t\r\n"):
        raise ValueError(f"cannot list {path!r} in a manifest of {base}: outside that folder, or a tab/newline in it")
    return relative


def load_resampled(root: str, reduce_zero_label: bool = False, manifest: str = MANIFEST_NAME) -> List[dict]:
    """Records of the manifest's pairs in its order; each image must be named ``<real_stem>_seed_<int>`` and
    every listed file must exist (one directory listing per folder, not one stat per file)."""
    path = os.path.join(root, manifest)
    pairs = read_manifest(path, root)
    listings: Dict[str, Set[str]] = defaultdict(set)
    for folder in {os.path.dirname(p) for pair in pairs for p in pair}:
        if os.path.isdir(folder):
            listings[folder] = set(list_files(folder))
    missing = [p for pair in pairs for p in pair if os.path.basename(p) not in listings[os.path.dirname(p)]]
    if missing:
        raise DatasetError(
            f"{len(missing)} files listed in {path} do not exist ({_shown(missing)}); restore them or re-run "
            f"{command_hint('resample')}"
        )
    records = []
    for image, mask in pairs:
        parsed = parse_synthetic_stem(os.path.splitext(os.path.basename(image))[0])
        if parsed is None:
            raise DatasetError(
                f"{path}: image {image} is not named '<real_stem>_seed_<int>'; list synthetic images only"
            )
        records.append(_record(image, mask, parsed[0], parsed[1], reduce_zero_label))
    return records


def _loader(kind: str, root_fn: Callable[[], str], reduce_zero_label: bool, hint: str, exts: Tuple[str, str]):
    def load() -> List[dict]:
        root = root_fn()
        if kind == "resampled":
            return load_resampled(root, reduce_zero_label)
        masks_dir = FILTERED_MASKS_DIR if kind == "filtered" else MASKS_DIR
        return load_synthetic(root, masks_dir, reduce_zero_label, exts[0], exts[1], hint)

    return load


def _compact_loader(kind: str, root_fn: Callable[[], str], reduce_zero_label: bool, hint: str, exts: Tuple[str, str]):
    """The compact form of an "all" or "filtered" split (``DatasetCatalog.get_compact``)."""

    def load() -> "SyntheticRecords":
        masks_dir = FILTERED_MASKS_DIR if kind == "filtered" else MASKS_DIR
        return load_synthetic_compact(root_fn(), masks_dir, reduce_zero_label, exts[0], exts[1], hint)

    return load


def register_synthetic_splits(
    names: Mapping[str, str],
    root_fn: Callable[[], str],
    real_dataset: str,
    reduce_zero_label: bool,
    missing_hint: str,
    image_ext: str = ".jpg",
    mask_ext: str = ".png",
) -> None:
    """Register the synthetic splits ``names`` (kind in SPLIT_KINDS -> dataset name) of the root ``root_fn()``.

    They share the metadata of ``real_dataset`` (classes, colours, ignore label, evaluator type), which must be
    registered first: synthetic images are drawn from the real masks, so they are the same label space; each split's
    metadata names it as ``real_dataset``.
    ``missing_hint`` tells the user how to obtain the root. Names already registered are left as they are."""
    unknown = set(names) - set(SPLIT_KINDS)
    if unknown:
        raise ValueError(f"unknown synthetic split kinds {sorted(unknown)}; use {SPLIT_KINDS}")
    real_meta = {k: v for k, v in MetadataCatalog.get(real_dataset).as_dict().items() if k not in _PATH_KEYS}
    if "stuff_classes" not in real_meta:
        raise ValueError(f"register the metadata of '{real_dataset}' before its synthetic splits")
    for kind, name in names.items():
        if name in DatasetCatalog:
            continue
        args = (kind, root_fn, reduce_zero_label, missing_hint, (image_ext, mask_ext))
        DatasetCatalog.register(name, _loader(*args))
        if kind != "resampled":  # a manifest lists a few pairs; its records stay a list
            DatasetCatalog.register_compact(name, _compact_loader(*args))
        # ``real_dataset`` lets tools/check_dataset.py find pairs whose real mask is absent, as resample_syn.py would;
        # ``reduce_zero_label`` tells tools/generate_syn.py how to write masks this split reads.
        MetadataCatalog.get(name).set(**real_meta, real_dataset=real_dataset, reduce_zero_label=reduce_zero_label)
