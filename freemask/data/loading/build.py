"""Training and test data loaders built from a config: records from the catalog, the mapper, the samplers.

The DataLoader receives whole batches from a batch sampler and calls the dataset once per item with the item's
key: ``(index, aug_seed)`` when training, so a sample is a pure function of the key in any worker process, and a
plain ``index`` when testing. Batches come back as lists of mapper dicts (the model pads and stacks).
"""

import logging
import signal
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from torch.utils.data import DataLoader, Dataset

from ...config import CfgNode, ConfigError
from ...utils import comm
from ..catalog import DatasetCatalog
from ..datasets.classification import sample_per_class
from ..errors import DatasetError
from ..mappers.build import build_mapper
from .chained_records import ChainedRecords
from .loader_start import loader_context
from .record_buffer import RecordBuffer
from .samplers import InferenceSampler, JointBatchSampler, TrainingBatchSampler
from .shared_records import SharedRecords

__all__ = ["MapDataset", "build_train_loader", "build_test_loader", "trivial_batch_collator"]

logger = logging.getLogger(__name__)

Mapper = Callable[[dict, Optional[np.random.Generator]], Dict[str, Any]]


class MapDataset(Dataset):
    """Records plus a mapper, indexed by ``(index, aug_seed)`` (training) or ``index`` (testing).

    Training keys give the mapper ``np.random.default_rng(aug_seed)`` as its only source of randomness; test keys
    give it ``None`` (deterministic test pipeline).

    ``skip_bad_samples`` (training keys only): a record whose files raise ``DatasetError`` is replaced by the next
    records ``(index + k) % n``, k = 1, 2, ..., with the same seed — deterministic, so ``--resume`` still replays
    the same batches — and the output dict gets ``"skipped": [file names]``. When the record and its next
    ``MAX_SKIPS`` replacements all fail, the record's own error is raised: the dataset itself is broken then, not a
    file. Test keys never skip, so an evaluation sees every image or fails.

    The records are kept in a :class:`~.record_buffer.RecordBuffer` (one shared-memory copy that the loader's
    workers map rather than receive), unless ``records`` already is a :class:`~.shared_records.SharedRecords` (a
    RecordBuffer, a synthetic split's SyntheticRecords, or a ChainedRecords of those).
    """

    MAX_SKIPS = 10

    def __init__(self, records: Sequence[dict], mapper: Mapper, skip_bad_samples: bool = False) -> None:
        self.records = records if isinstance(records, SharedRecords) else RecordBuffer(records)
        self.mapper = mapper
        self.skip_bad_samples = skip_bad_samples

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: Union[int, Tuple[int, int]]) -> Dict[str, Any]:
        if not isinstance(key, tuple):
            return self.mapper(self.records[key], None)
        index, aug_seed = key
        if not self.skip_bad_samples:
            return self.mapper(self.records[index], np.random.default_rng(aug_seed))
        skipped: List[str] = []
        first_error: Optional[DatasetError] = None
        for k in range(min(self.MAX_SKIPS, len(self.records) - 1) + 1):
            record = self.records[(index + k) % len(self.records)]
            try:
                out = self.mapper(record, np.random.default_rng(aug_seed))
            except DatasetError as error:
                first_error = first_error or error
                skipped.append(record["file_name"])
                continue
            if skipped:
                out["skipped"] = skipped
            return out
        raise DatasetError(
            f"{first_error} (DATALOADER.SKIP_BAD_SAMPLES gave up: the {len(skipped) - 1} training records after it "
            f"failed too)"
        ) from first_error


def trivial_batch_collator(batch: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Keep a batch as the list of mapper dicts (module level so worker processes can pickle it)."""
    return batch


def _load_records(names: Sequence[str], key: str, compact: bool = False) -> List[Sequence[dict]]:
    """Records of every dataset in ``names``; an empty one is an error naming the dataset and the config key.
    ``compact``: a dataset's compact form (``DatasetCatalog.get_compact``, already in shared memory) where it has
    one, else its list."""
    all_records = []
    for name in names:
        records = DatasetCatalog.get_compact(name) if compact else None
        if records is None:
            records = DatasetCatalog.get(name)
        if len(records) == 0:
            raise DatasetError(f"dataset '{name}' in {key} has no images; check its folder or remove it from {key}")
        all_records.append(records)
    return all_records


def _drop_images_without_objects(records: List[dict], name: str) -> List[dict]:
    """``records`` without the instance records whose annotations are all crowd (detectron2's
    ``filter_images_with_only_crowd_annotations``); an error when none is left."""
    kept = [r for r in records if "annotations" not in r or any(not a.get("iscrowd", 0) for a in r["annotations"])]
    if len(kept) < len(records):
        logger.info("Removed %d images of %s with no non-crowd object", len(records) - len(kept), name)
    if not kept:
        raise DatasetError(
            f"every image of '{name}' has only crowd annotations or none; check its annotation file, or set "
            "DATALOADER.FILTER_EMPTY_ANNOTATIONS False"
        )
    return kept


def _sample_stage1(records: List[dict], name: str, cfg: CfgNode) -> List[dict]:
    """At most DATASETS.SAMPLE_PER_CLASS records per class of a stage-1 dataset (FreeSeg's prompt learning), the
    same on every rank (seeded by DATASETS.SAMPLE_SEED alone); -1 keeps them all."""
    per_class = int(cfg.DATASETS.SAMPLE_PER_CLASS)
    if per_class <= 0:
        return records
    if "category_id" not in records[0]:
        raise ConfigError(
            f"DATASETS.SAMPLE_PER_CLASS {per_class} samples stage-1 records (one per image and class), but dataset "
            f"'{name}' in DATASETS.TRAIN has none; train on its '_classification' twin or set SAMPLE_PER_CLASS -1"
        )
    kept = sample_per_class(records, per_class, int(cfg.DATASETS.SAMPLE_SEED))
    logger.info("Training dataset %s: %d of %d (image, class) records kept, at most %d per class", name, len(kept),
                len(records), per_class)  # fmt: skip
    return kept


def build_train_loader(cfg: CfgNode, start_iter: int = 0) -> DataLoader:
    """The infinite training loader of this rank, starting at iteration ``start_iter``.

    SYN_RATIO 0: TRAIN + TRAIN_SYN concatenated with REPEAT_FACTORS and shuffled (TrainingBatchSampler).
    SYN_RATIO > 0: each global batch exactly that fraction synthetic (JointBatchSampler); REPEAT_FACTORS then
    weight the datasets within the real and within the synthetic stream. Each iteration yields a list of
    ``SOLVER.IMS_PER_BATCH / world_size`` mapper dicts.
    """
    train, train_syn = list(cfg.DATASETS.TRAIN), list(cfg.DATASETS.TRAIN_SYN)
    ratio = float(cfg.DATALOADER.SYN_RATIO)
    if not train and not train_syn:
        raise ConfigError("DATASETS.TRAIN and DATASETS.TRAIN_SYN are both empty; name at least one registered dataset")
    if not 0.0 <= ratio < 1.0:
        raise ConfigError(f"DATALOADER.SYN_RATIO must be in [0, 1), got {ratio}")
    if ratio > 0 and not (train and train_syn):
        raise ConfigError(
            f"DATALOADER.SYN_RATIO {ratio} mixes real and synthetic images: set both DATASETS.TRAIN and "
            f"DATASETS.TRAIN_SYN (got {len(train)} and {len(train_syn)} datasets), or set SYN_RATIO 0"
        )
    repeats = list(cfg.DATASETS.REPEAT_FACTORS) or [1] * (len(train) + len(train_syn))
    if len(repeats) != len(train) + len(train_syn):
        raise ConfigError(
            f"DATASETS.REPEAT_FACTORS has {len(repeats)} values but DATASETS.TRAIN + DATASETS.TRAIN_SYN name "
            f"{len(train) + len(train_syn)} datasets; give one per dataset or leave it empty"
        )
    real = [_sample_stage1(r, n, cfg) for r, n in zip(_load_records(train, "DATASETS.TRAIN"), train)]
    if cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS:
        real = [_drop_images_without_objects(records, name) for records, name in zip(real, train)]
    syn = _load_records(train_syn, "DATASETS.TRAIN_SYN", compact=True)
    real_sizes, syn_sizes = [len(r) for r in real], [len(r) for r in syn]
    for name, size, repeat in zip(train + train_syn, real_sizes + syn_sizes, repeats):
        logger.info("Training dataset %s: %d images, repeated x%d", name, size, repeat)

    global_batch = cfg.SOLVER.IMS_PER_BATCH
    world_size = comm.get_world_size()
    seed = comm.shared_seed(cfg.SEED)
    if cfg.SEED < 0:
        logger.warning("SEED is negative; the training loader uses the drawn seed %d", seed)
    if ratio > 0:
        sampler = JointBatchSampler(
            real_sizes,
            syn_sizes,
            ratio,
            global_batch,
            real_repeat_factors=repeats[: len(train)],
            syn_repeat_factors=repeats[len(train) :],
            seed=seed,
            start_iter=start_iter,
            rank=comm.get_rank(),
            world_size=world_size,
        )
        logger.info(
            "Joint: %d real, %d synthetic images; %d of %d images per global batch synthetic (%.0f%%)",
            len(sampler.real),
            len(sampler.syn),
            sampler.num_syn,
            global_batch,
            100.0 * sampler.num_syn / global_batch,
        )
    else:
        sampler = TrainingBatchSampler(
            real_sizes + syn_sizes,
            global_batch,
            repeat_factors=repeats,
            seed=seed,
            start_iter=start_iter,
            rank=comm.get_rank(),
            world_size=world_size,
        )
        logger.info(
            "Plain: %d images (%d real, %d synthetic), %d per epoch with repeat factors, global batch %d",
            sum(real_sizes) + sum(syn_sizes),
            sum(real_sizes),
            sum(syn_sizes),
            len(sampler.stream),
            global_batch,
        )
    mapper = build_mapper(cfg, is_train=True)
    # One shared-memory sequence per dataset, in TRAIN + TRAIN_SYN order: the compact forms as they are, the lists
    # encoded into a RecordBuffer each; the rank keeps no list.
    records = ChainedRecords([r if isinstance(r, SharedRecords) else RecordBuffer(r) for r in real + syn])
    del real, syn
    logger.info("Training records: %d in %.1f MiB of shared memory", len(records), records.nbytes / 2**20)
    dataset = MapDataset(records, mapper, skip_bad_samples=cfg.DATALOADER.SKIP_BAD_SAMPLES)
    num_workers = cfg.DATALOADER.NUM_WORKERS
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=trivial_batch_collator,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        worker_init_fn=ignore_ctrl_c,
        multiprocessing_context=loader_context(cfg.DATALOADER.START_METHOD, num_workers, "Training"),
    )


def build_test_loader(cfg: CfgNode, dataset_name: str) -> DataLoader:
    """Loader over ``dataset_name`` in order, ``TEST.IMS_PER_BATCH`` images per batch (default 1), this rank's
    contiguous shard of it (every image once overall); ``INPUT.DATASET_MAPPER_NAME`` picks the mapper."""
    records = DatasetCatalog.get(dataset_name)
    if len(records) == 0:
        raise DatasetError(f"dataset '{dataset_name}' in DATASETS.TEST has no images; check its folder")
    if cfg.TEST.IMS_PER_BATCH < 1:
        raise ConfigError(f"TEST.IMS_PER_BATCH must be at least 1, got {cfg.TEST.IMS_PER_BATCH}")
    dataset = MapDataset(RecordBuffer(records), build_mapper(cfg, is_train=False))
    del records
    num_workers = cfg.DATALOADER.NUM_WORKERS
    return DataLoader(
        dataset,
        batch_size=cfg.TEST.IMS_PER_BATCH,
        sampler=InferenceSampler(len(dataset)),
        collate_fn=trivial_batch_collator,
        num_workers=num_workers,
        worker_init_fn=ignore_ctrl_c,
        multiprocessing_context=loader_context(cfg.DATALOADER.START_METHOD, num_workers, f"Test ({dataset_name})"),
    )


def ignore_ctrl_c(worker_id: int) -> None:
    """Loader workers ignore SIGINT: a Ctrl-C in the terminal reaches them too, and a worker that died of it would
    fail the training process's next batch on one rank while the others wait in a collective. The training process
    itself stops cleanly (freemask/engine/interrupt.py) and shuts its workers down."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
