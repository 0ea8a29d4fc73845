"""A generation run behind ``tools/generate_syn.py``: which pairs, the masks they are drawn from, the settings
check, the ranks' shares, and the loop that writes the pairs.

Every output depends on its ``(stem, seed)`` alone (the noise from :mod:`.noise`, the layout from the mask, the
backend's settings), so the work can be cut any way. The float kernels are not batch-invariant, though (see
``diffusion.py``): on a CPU the backend runs one request per call, so one process or eight, batch 1 or 16,
interrupted or not give the same files; on a GPU a batch is one call and its companions move the rounding. So that a
resumed run still equals an uninterrupted one there, the batches are cut once from the whole sorted pair list (never
from what is left to do), rank ``r`` of ``W`` takes the unfinished batches ``r, r + W, ...``, and a partly finished
batch is recomputed whole (only its missing pairs are written).
"""

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import AbstractSet, Any, Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..data.catalog import DatasetCatalog, MetadataCatalog
from ..data.datasets.synthetic import IMAGES_DIR, MASKS_DIR
from ..data.errors import DatasetError
from ..data.mappers.semantic import read_mask, reduce_zero_label
from ..synthetic.sources import RealMasks
from ..utils import comm
from ..utils.file_hash import file_sha256
from . import outputs
from .backend import GenerationBackend, GenerationRequest
from .noise import NOISE_VERSION, batch_latents

logger = logging.getLogger("freemask.generation")

Pair = Tuple[str, int]
_SHOWN = 5


@dataclass(frozen=True)
class GenerationJob:
    """Everything a rank needs besides its backend (picklable: it travels to the spawned workers).

    ``pairs``: the (stem, seed) pairs this run must have in ``output`` when it ends, sorted; ``raw_output``: masks
    written raw ADE20K-style (0 = unlabelled, class k stored as k + 1) rather than 0..K-1 with ``masks.ignore_label``.
    """

    masks: RealMasks
    class_names: Tuple[str, ...]
    pairs: Tuple[Pair, ...]
    output: str
    raw_output: bool
    size: int
    jpeg_quality: int = 95
    batch_size: int = 4
    overwrite: bool = False
    progress: bool = True


# ------------------------------------------------------------------------------------------------ masks


def training_labels(stored: np.ndarray, raw: bool, ignore_label: int) -> np.ndarray:
    """Stored mask values to training labels (0..K-1, ``ignore_label``)."""
    return reduce_zero_label(stored, ignore_label) if raw else stored


def label_problem(path: str, raw: bool, ignore_label: int, num_classes: int) -> Optional[str]:
    """None when the mask ``path`` only holds labels of the ``num_classes`` classes (or ignore), else one line."""
    labels = training_labels(read_mask(path), raw, ignore_label)
    values = np.unique(labels)
    bad = values[(values >= num_classes) & (values != ignore_label)]
    if not bad.size:
        return None
    stored = [int(v) + 1 for v in bad] if raw else [int(v) for v in bad]
    shown = ", ".join(map(str, stored[:_SHOWN])) + (", ..." if len(stored) > _SHOWN else "")
    convention = f"0..{num_classes - 1}, ignore {ignore_label}"
    if raw:
        convention = "raw: 0 = unlabelled, class k stored as k + 1"
    hint = "; raw ADE20K masks? pass --reduce-zero-label" if not raw and int(bad.max()) == num_classes else ""
    return (
        f"{path}: stored labels {shown} are outside the {num_classes} classes of the dataset (read as {convention})"
        f"{hint}; fix the mask or use the matching dataset"
    )


def check_mask_labels(masks: RealMasks, num_classes: int, stems: Sequence[str], workers: int = 4) -> None:
    """DatasetError naming the first (by stem) mask with a label outside the classes; read by ``workers`` threads
    (decoding runs in OpenCV, which releases the GIL)."""

    def problem(stem: str) -> Optional[str]:
        return label_problem(masks.paths[stem], masks.reduce_zero_label, masks.ignore_label, num_classes)

    with ThreadPoolExecutor(max(workers, 1)) as pool:
        for found in pool.map(problem, sorted(stems)):
            if found:
                raise DatasetError(found)


def check_output_is_not_input(output: str, masks: RealMasks) -> None:
    """DatasetError when the pairs would be written into the folder of the real masks: inputs are never modified."""
    targets = {os.path.realpath(os.path.join(output, sub)) for sub in (IMAGES_DIR, MASKS_DIR)}
    for folder in sorted({os.path.dirname(p) for p in masks.paths.values()}):
        if os.path.realpath(folder or ".") in targets:
            raise DatasetError(
                f"--output {output} would write into {folder}, the folder of the real masks {masks.source}; inputs "
                f"are never overwritten: choose another --output"
            )


def raw_output_for(real_dataset: Optional[str], input_raw: bool) -> bool:
    """Whether masks are written raw ADE20K-style: as the registered ``*_syn_*`` splits of ``real_dataset`` read
    them (ADE20K's read raw masks even when the real split was prepared to 0..149), else as the input is stored."""
    if real_dataset:
        flags = {
            MetadataCatalog.get(n).get("reduce_zero_label")
            for n in DatasetCatalog.list()
            if MetadataCatalog.get(n).get("real_dataset") == real_dataset
        } - {None}
        if len(flags) == 1:
            return bool(flags.pop())
    return input_raw


def _encode_labels(labels: np.ndarray, raw: bool, ignore_label: int, num_classes: int) -> np.ndarray:
    """Training labels to the output's stored values (uint8 when they fit)."""
    if raw:
        stored = np.where(labels == ignore_label, 0, labels.astype(np.int64) + 1)
        top = num_classes
    else:
        stored, top = labels, max(num_classes - 1, ignore_label)
    return stored.astype(np.uint8 if top < 256 else np.uint16)


def pair_masks(job: GenerationJob, stem: str) -> Tuple[np.ndarray, np.ndarray]:
    """``((size, size) int64 training labels for the backend, (size, size) mask to write)`` of a real mask.

    Resized with nearest sampling at pixel centres (OpenCV's INTER_NEAREST_EXACT, which is Pillow's NEAREST, the
    resize FreestyleNet applies to its layouts), so the written mask lines up pixel for pixel with the image the
    backend painted from the same labels. With the input's own encoding the stored values are copied unchanged."""
    masks = job.masks
    stored = cv2.resize(read_mask(masks.paths[stem]), (job.size, job.size), interpolation=cv2.INTER_NEAREST_EXACT)
    labels = training_labels(stored, masks.reduce_zero_label, masks.ignore_label)
    if job.raw_output == masks.reduce_zero_label:
        written = stored
    else:
        written = _encode_labels(labels, job.raw_output, masks.ignore_label, len(job.class_names))
    return labels.astype(np.int64), written


# ------------------------------------------------------------------------------------------------ which pairs


def all_pairs(stems: Sequence[str], seeds: Sequence[int]) -> Tuple[Pair, ...]:
    """Every ``(stem, seed)``, sorted."""
    return tuple(sorted((stem, int(seed)) for stem in stems for seed in set(seeds)))


def resampled_pairs(
    masks: RealMasks, seeds: Sequence[int], class_loss_path: str, max_copies: int, draw_seed: int, workers: int = 4
) -> Tuple[Pair, ...]:
    """The pairs ``tools/resample_syn.py --seed draw_seed --max-copies max_copies`` would choose from a folder
    holding every seed of ``seeds`` for every mask of ``masks`` (sorted).

    A mask's copy count depends only on its hardness rank among the real masks (real masks and class losses; no
    synthetic image), and its seeds on the seeded draw over the seeds available; so generating exactly these pairs
    gives the resampler a folder in which each mask has as many seeds as copies, and it takes them all: the same
    manifest as from the full folder, for about half the images."""
    from ..synthetic.class_loss import read_class_loss
    from ..synthetic.resample.hardness import compute_hardness
    from ..synthetic.resample.plan import plan_resampling

    class_loss = read_class_loss(class_loss_path, masks.num_classes)
    names = sorted(masks.paths)
    hardness = compute_hardness(
        [masks.paths[n] for n in names],
        class_loss.mean_loss_array(),
        masks.ignore_label,
        masks.reduce_zero_label,
        workers,
    )
    available = sorted({int(s) for s in seeds})
    plan = plan_resampling(dict(zip(names, hardness)), {n: available for n in names}, max_copies, draw_seed)
    return tuple(sorted((name, seed) for name, chosen in zip(plan.names, plan.chosen) for seed in chosen))


# ------------------------------------------------------------------------------------------------ settings


def run_settings(job: GenerationJob, backend: GenerationBackend) -> Dict[str, Any]:
    """What the pixels of a pair depend on; a folder's pairs all share them (see outputs.check_settings).

    The seeds, the masks chosen and the batch size are not here: they decide which pairs exist, not what a pair
    looks like, so a later run may add seeds or masks to a folder."""
    weights = sorted([os.path.basename(p), file_sha256(p)] for p in backend.weight_files())
    return {
        **backend.settings(),  # flat, so a refusal names the key that changed
        "backend": backend.name,
        "weights_sha256": weights,
        "masks": job.masks.source,
        "mask_encoding": "raw (0 = unlabelled, class k as k + 1)" if job.raw_output else "labels 0..K-1",
        "ignore_label": job.masks.ignore_label,
        "size": job.size,
        "jpeg_quality": job.jpeg_quality,
        "noise": NOISE_VERSION,
    }


def _prepare_output(job: GenerationJob, backend: GenerationBackend) -> Tuple[Dict[str, Any], List[Pair]]:
    """On rank 0: clear (--overwrite) or check the folder, write the settings; returns (settings, finished pairs)."""
    root = job.output
    os.makedirs(root, exist_ok=True)
    if job.overwrite:
        outputs.remove_pairs(root, outputs.any_pair_files(root))
        manifest_file = os.path.join(root, outputs.MANIFEST_NAME)
        if os.path.exists(manifest_file):
            os.remove(manifest_file)
    stale = outputs.prepare_root(root)
    if stale:
        logger.info("Removed %d temporary files left by an interrupted run in %s", stale, root)
    settings = run_settings(job, backend)
    outputs.check_settings(root, outputs.read_manifest(root), settings, len(outputs.any_pair_files(root)))
    finished = sorted(outputs.finished_pairs(root))
    outputs.write_manifest(root, settings, finished)
    return settings, finished


def _setup(job: GenerationJob, backend: GenerationBackend) -> Tuple[Optional[Dict[str, Any]], List[Pair]]:
    """Rank 0 prepares the folder; every rank learns the outcome, and raises the same error if there was one."""
    result: Any
    if comm.is_main_process():
        try:
            result = _prepare_output(job, backend)
        except outputs.OutputSettingsError as e:
            result = e
    else:
        result = None
    result = comm.broadcast(result)
    if isinstance(result, outputs.OutputSettingsError):
        raise result
    return result


# ------------------------------------------------------------------------------------------------ the loop


def rank_batches(
    pairs: Sequence[Pair], done: AbstractSet[Pair], batch_size: int, rank: int, world_size: int
) -> List[List[Pair]]:
    """This rank's batches: ``pairs`` (sorted) cut into batches of ``batch_size``, the batches holding a pair not in
    ``done``, every ``world_size``-th one of those. Cut from all pairs so a batch's companions never depend on what an
    interrupted run finished."""
    batches = [list(pairs[i : i + batch_size]) for i in range(0, len(pairs), batch_size)]
    todo = [b for b in batches if any(p not in done for p in b)]
    return todo[rank::world_size]


class _MaskCache:
    """The last real mask read: sorted pairs put a mask's seeds next to each other, so each is read once."""

    def __init__(self, job: GenerationJob) -> None:
        self.job, self.stem, self.value = job, None, None

    def get(self, stem: str) -> Tuple[np.ndarray, np.ndarray]:
        if stem != self.stem:
            self.stem, self.value = stem, pair_masks(self.job, stem)
        return self.value


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    world = comm.get_world_size()
    desc = "generate" if world == 1 else f"generate (rank 0 of {world})"
    return tqdm(total=total, desc=desc, unit="img", disable=not enabled, dynamic_ncols=True, smoothing=0.05)


def generate_pairs(
    job: GenerationJob,
    backend: GenerationBackend,
    batches: Sequence[Sequence[Pair]],
    done: AbstractSet[Pair],
    progress: bool,
) -> int:
    """Generate ``batches`` and write their pairs not in ``done``; returns the number of pairs written."""
    cache = _MaskCache(job)
    written = 0
    with _progress(sum(p not in done for b in batches for p in b), progress) as bar:
        for batch in batches:
            masks = [cache.get(stem) for stem, _ in batch]
            requests = [
                GenerationRequest(stem, seed, labels, job.class_names)
                for (stem, seed), (labels, _) in zip(batch, masks)
            ]
            images = backend.generate(requests, batch_latents(batch, backend.latent_shape))
            for (stem, seed), image, (_, mask) in zip(batch, images, masks):
                if (stem, seed) in done:
                    continue
                outputs.write_pair(job.output, stem, seed, image, mask, job.jpeg_quality)
                written += 1
                bar.update(1)
    return written


def run_generation(job: GenerationJob, backend_fn: Callable[[], GenerationBackend]) -> Optional[Dict[str, Any]]:
    """Make every pair of ``job.pairs`` exist in ``job.output``; returns the final manifest on rank 0 (None on the
    others). ``backend_fn`` builds this rank's backend (on its own device)."""
    backend = backend_fn()
    settings, finished = _setup(job, backend)
    done = set(finished)
    todo = [p for p in job.pairs if p not in done]
    rank, world = comm.get_rank(), comm.get_world_size()
    mine = rank_batches(job.pairs, done, job.batch_size, rank, world)
    logger.info(
        "Generating %d pairs into %s (%d of %d already there), %d processes, batch %d, backend %s",
        len(todo),
        job.output,
        len(job.pairs) - len(todo),
        len(job.pairs),
        world,
        job.batch_size,
        backend.name,
    )
    start = time.perf_counter()
    written = generate_pairs(job, backend, mine, done, job.progress and comm.is_main_process())
    seconds = time.perf_counter() - start
    if written:
        logger.info("Rank %d: %d images in %.1f s (%.3f images/s)", rank, written, seconds, written / seconds)
    comm.synchronize()
    if not comm.is_main_process():
        return None
    final = sorted(outputs.finished_pairs(job.output))
    outputs.write_manifest(job.output, settings, final)
    manifest = outputs.read_manifest(job.output)
    logger.info("%s: %d pairs; manifest %s", job.output, len(final), outputs.MANIFEST_NAME)
    return manifest
