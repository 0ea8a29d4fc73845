"""A fake FreeMask dataset tree of a given size for bench/data_scale.py: hard links of a few tiny toy files.

The tree has the on-disk layout the registered datasets read (freemask/data/datasets/ade20k.py, coco_stuff.py,
synthetic.py), so the real entry points list, hold and load it exactly as they would FreeMask's release:

    ADE20K:  ADEChallengeData2016/images/training/ADE_train_<8 digits>.jpg, annotations/training/<same>.png (raw
             masks, 0 = unlabeled), ADE20K_Synthetic/{images,annotations}/<real stem>_seed_<s>.{jpg,png}
    COCO:    coco/train2017/<12 digits>.jpg, coco/stuffthingmaps_detectron2/train2017/<same>.png,
             COCO_Synthetic/{images,annotations}/<real stem>_seed_<s>.{jpg,png}

Every image is a link to one of a handful of 128x128 toy images (masks likewise), so 1.6M files cost only their
directory entries. A tree is built once and reused: ``.complete.json`` in its folder says it is whole (a folder
without it is an interrupted build, removed and rebuilt).
"""

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from typing import Dict, List, Tuple

# ext4 caps an inode at 65,000 links: a source file is copied afresh after this many.
MAX_LINKS_PER_SOURCE = 30_000
ADE_REAL_TRAIN = 20_210  # ADEChallengeData2016 training images
COCO_REAL_TRAIN = 118_287  # COCO 2017 train images
COMPLETE = ".complete.json"
BASELINE_BELOW = 10_000  # a plain size below this is a small joint set, not a synthetic count
FIRST_SEED = 42

# family -> (real folder, real mask folder, synthetic folder, real name format, train, train_syn, classes)
FAMILIES: Dict[str, Tuple[str, str, str, str, str, str, int]] = {
    "ade": (
        "ADEChallengeData2016/images/training",
        "ADEChallengeData2016/annotations/training",
        "ADE20K_Synthetic",
        "ADE_train_{:08d}",
        "ade20k_sem_seg_train",
        "ade20k_syn_sem_seg_train",
        150,
    ),
    "coco": (
        "coco/train2017",
        "coco/stuffthingmaps_detectron2/train2017",
        "COCO_Synthetic",
        "{:012d}",
        "coco_2017_train_stuff_sem_seg",
        "coco_2017_syn_stuff_sem_seg_train",
        171,
    ),
}
FULL_REAL = {"ade": ADE_REAL_TRAIN, "coco": COCO_REAL_TRAIN}


@dataclass(frozen=True)
class TreeSpec:
    """``real`` real pairs and ``synthetic`` synthetic pairs of one dataset family (``ade`` or ``coco``)."""

    family: str
    real: int
    synthetic: int

    @property
    def joint(self) -> int:
        return self.real + self.synthetic

    @property
    def name(self) -> str:
        return f"{self.family}_real{self.real}_syn{self.synthetic}"

    @property
    def train_dataset(self) -> str:
        return FAMILIES[self.family][4]

    @property
    def syn_dataset(self) -> str:
        return FAMILIES[self.family][5]

    @property
    def num_classes(self) -> int:
        return FAMILIES[self.family][6]


def _count(text: str) -> int:
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def parse_size(text: str) -> TreeSpec:
    """A size as the command line gives it.

    ``N`` (``600``, ``20k``, ``400k``, ``710k``): below 10k, a small ADE20K-like set of N joint records (half real,
    half synthetic: the baseline); up to 420k, N synthetic pairs beside ADE20K's 20,210 real
    images; above, N synthetic pairs beside COCO-Stuff-164K's 118,287. ``ade:N`` or ``coco:N`` names the family.
    """
    family, _, count = text.rpartition(":")
    n = _count(count)
    if n <= 0 or (family and family not in FAMILIES):
        raise ValueError(f"size {text!r}: write N (e.g. 400k) or ade:N / coco:N with N > 0")
    if not family and n < BASELINE_BELOW:
        return TreeSpec("ade", n // 2, n - n // 2)
    family = family or ("ade" if n <= 420_000 else "coco")
    return TreeSpec(family, FULL_REAL[family], n)


class LinkPool:
    """Hard links to copies (in ``scratch``, inside the tree) of a few source files, a fresh copy before one reaches
    the link cap. The sources themselves are never linked: their count would add up across trees."""

    def __init__(self, sources: List[str], scratch: str) -> None:
        self.sources = sources
        self.scratch = scratch
        self.current = list(sources)
        self.links = [MAX_LINKS_PER_SOURCE] * len(sources)  # a copy is made at each source's first link
        self.copies = 0

    def link(self, index: int, destination: str) -> None:
        k = index % len(self.sources)
        if self.links[k] >= MAX_LINKS_PER_SOURCE:
            self.copies += 1
            base = os.path.basename(self.sources[k])
            self.current[k] = os.path.join(self.scratch, f"{self.copies}_{base}")
            shutil.copyfile(self.sources[k], self.current[k])
            self.links[k] = 0
        os.link(self.current[k], destination)
        self.links[k] += 1


def toy_sources(toy_root: str) -> Tuple[List[str], List[str]]:
    """(images, raw masks) of the toy training split (tools/make_toy_dataset.py) under ``toy_root``."""
    base = os.path.join(toy_root, "toy", "ADEChallengeData2016")
    images_dir, masks_dir = os.path.join(base, "images", "training"), os.path.join(base, "annotations", "training")
    stems = sorted(n[: -len(".jpg")] for n in os.listdir(images_dir) if n.endswith(".jpg"))
    if not stems:
        raise FileNotFoundError(f"no toy images in {images_dir}; run tools/make_toy_dataset.py --root {toy_root}")
    images = [os.path.join(images_dir, s + ".jpg") for s in stems]
    return images, [os.path.join(masks_dir, s + ".png") for s in stems]


def tree_is_complete(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, COMPLETE))


def build_tree(folder: str, spec: TreeSpec, images: List[str], masks: List[str]) -> float:
    """Build ``spec``'s tree in ``folder`` (removed first if an earlier build was interrupted); seconds taken.

    Synthetic pair ``i`` is a copy of real image ``i % real`` with seed ``42 + i // real``, as FreeMask's release
    names several generated copies per real mask."""
    start = time.perf_counter()
    if os.path.exists(folder):
        shutil.rmtree(folder)
    stem_format = FAMILIES[spec.family][3]
    real_dir = os.path.join(folder, FAMILIES[spec.family][0])
    real_mask_dir = os.path.join(folder, FAMILIES[spec.family][1])
    syn_dir = os.path.join(folder, FAMILIES[spec.family][2])
    scratch = os.path.join(folder, ".sources")
    for d in (real_dir, real_mask_dir, os.path.join(syn_dir, "images"), os.path.join(syn_dir, "annotations"), scratch):
        os.makedirs(d)
    image_pool, mask_pool = LinkPool(images, scratch), LinkPool(masks, scratch)
    stems = [stem_format.format(i + 1) for i in range(spec.real)]
    for i, stem in enumerate(stems):
        image_pool.link(i, os.path.join(real_dir, stem + ".jpg"))
        mask_pool.link(i, os.path.join(real_mask_dir, stem + ".png"))
    for i in range(spec.synthetic):
        stem = f"{stems[i % spec.real]}_seed_{FIRST_SEED + i // spec.real}"
        image_pool.link(i, os.path.join(syn_dir, "images", stem + ".jpg"))
        mask_pool.link(i, os.path.join(syn_dir, "annotations", stem + ".png"))
    seconds = time.perf_counter() - start
    with open(os.path.join(folder, COMPLETE), "w") as f:
        json.dump({**asdict(spec), "build_seconds": round(seconds, 1)}, f)
    return seconds


def ensure_tree(root: str, spec: TreeSpec, images: List[str], masks: List[str]) -> Tuple[str, float, bool]:
    """(folder, build seconds, built now) of ``spec``'s tree under ``root``: reused when complete."""
    folder = os.path.join(root, spec.name)
    if tree_is_complete(folder):
        with open(os.path.join(folder, COMPLETE)) as f:
            return folder, float(json.load(f)["build_seconds"]), False
    return folder, build_tree(folder, spec, images, masks), True
