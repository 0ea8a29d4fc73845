"""Iteration-based trainer: DDP, AMP, gradient clipping, periodic checkpoints and evaluation, resumable.

Iterations are numbered from 0 everywhere a user reads them: the console (``iter: 20``), metrics.json, checkpoint
names (``model_0000020.pth`` holds the state after iteration 20), "Resuming at iteration 21" and the one-line
messages when training stops early (Ctrl-C, a full disk, a NaN loss).
"""

import logging
import math
import os
import resource
import time
import warnings
from collections import OrderedDict
from typing import Dict, List, Optional, Set, Tuple

import torch
from fvcore.common.checkpoint import PeriodicCheckpointer
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..arguments import resume_command
from ..checkpoint import Checkpointer
from ..config import CfgNode, ConfigError, resolve_device
from ..data.loading.build import build_test_loader, build_train_loader
from ..errors import TrainingInterrupted, UserError, file_system_refusal, output_write_error
from ..evaluation import inference_on_dataset
from ..evaluation.panels import log_prediction_panels
from ..evaluation.results_json import Provenance, results_produced_by
from ..evaluation.sem_seg import INFERENCE_DIR, MULTI_SCALE_DIR
from ..modeling import build_model
from ..modeling.inference import SegmentationInference
from ..solver import build_gradient_clipper, build_lr_scheduler, build_optimizer
from ..utils import comm
from ..utils.events import METRICS_FILE, MetricStorage, default_writers, last_written_iteration
from .evaluation import (
    LOGGED_METRICS,
    build_evaluator,
    evaluation_model,
    panel_model,
    training_provenance,
    weights_provenance,
)
from .interrupt import StopRequest
from .precision import apply_tf32

with warnings.catch_warnings():
    # fvcore.nn's __init__ runs torch.jit.script on its focal loss, deprecated since torch 2.14: a FutureWarning on
    # every start that is neither ours nor the user's (and would break the one-line error contract on stderr).
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
    from fvcore.nn import parameter_count

logger = logging.getLogger(__name__)

# Checkpoint entry: the scalars of the saved iteration that metrics.json did not have yet when it was saved.
UNWRITTEN_METRICS = "unwritten_metrics"


class LossNotFiniteError(UserError, FloatingPointError):
    """The loss became NaN or infinite; usually a learning rate too high for the batch size."""


def iteration_seed(seed: int, iteration: int, rank: int) -> int:
    """The torch seed of one iteration on one rank (dropout, point sampling ...).

    Re-seeding every iteration makes iteration ``k`` compute the same thing whether the run started at 0 or was
    resumed at ``k``, which a single seed at start-up cannot give.
    """
    return (seed * 1_000_003 + iteration * 7919 + rank) % 2**63


class Trainer:
    """Trains ``cfg.MODEL`` on ``cfg.DATASETS.TRAIN`` for ``SOLVER.MAX_ITER`` iterations.

    The ``build_*`` class methods are the seams a project overrides (another loader, evaluator or optimizer)
    without copying the loop.
    """

    def __init__(self, cfg: CfgNode) -> None:
        self.cfg = cfg
        model = self.build_model(cfg)
        self.optimizer = self.build_optimizer(cfg, model)
        self.scheduler = build_lr_scheduler(cfg, self.optimizer)
        device = resolve_device(cfg)
        self.device_type = device.type
        apply_tf32(cfg.SOLVER.ALLOW_TF32, str(device))
        amp = cfg.SOLVER.AMP
        if amp.DTYPE not in ("bfloat16", "float16"):
            raise ConfigError(f"SOLVER.AMP.DTYPE must be bfloat16 or float16, got {amp.DTYPE!r}")
        self.amp_dtype: Optional[torch.dtype] = getattr(torch, amp.DTYPE) if amp.ENABLED else None
        self.scaler = torch.amp.GradScaler(self.device_type, enabled=self.amp_dtype == torch.float16)
        self.clip_gradients = build_gradient_clipper(cfg)
        self.model_without_ddp = model
        self.model: nn.Module = model
        if comm.get_world_size() > 1:
            device_ids = [comm.get_local_rank()] if self.device_type == "cuda" else None
            self.model = DistributedDataParallel(model, device_ids=device_ids, broadcast_buffers=False)
        self.checkpointer = Checkpointer(
            model,
            cfg.OUTPUT_DIR,
            save_to_disk=comm.is_main_process(),
            allow_unsafe=cfg.MODEL.ALLOW_UNSAFE_WEIGHTS,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            grad_scaler=self.scaler,
        )
        if comm.is_main_process():
            self.checkpointer.remove_stale_temporaries()
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        # Set when any rank got Ctrl-C; agreed over ranks in the per-iteration all-reduce, so all stop together.
        self._stop = StopRequest()
        self._stop_agreed = False
        # Training samples this rank's loader replaced (DATALOADER.SKIP_BAD_SAMPLES) since this process started.
        self._skipped_count = 0
        self._skipped_files: Set[str] = set()
        # The resumed checkpoint's scalars that were not yet in metrics.json when it was saved (see train()).
        self._resumed_metrics: Dict[str, float] = {}

    # ----------------------------------------------------------------------------------------------------- seams
    @classmethod
    def build_model(cls, cfg: CfgNode) -> nn.Module:
        model = build_model(cfg)
        n_params = parameter_count(model)[""]
        logger.info("Model %s: %.2fM parameters", cfg.MODEL.META_ARCHITECTURE, n_params / 1e6)
        return model

    @classmethod
    def build_optimizer(cls, cfg: CfgNode, model: nn.Module) -> torch.optim.Optimizer:
        return build_optimizer(cfg, model)

    @classmethod
    def build_train_loader(cls, cfg: CfgNode, start_iter: int):
        return build_train_loader(cfg, start_iter=start_iter)

    @classmethod
    def build_evaluator(cls, cfg: CfgNode, dataset_name: str, output_dir: str):
        return build_evaluator(cfg, dataset_name, output_dir)

    # ------------------------------------------------------------------------------------------------ checkpoint
    def resume_or_load(self, resume: bool = True) -> None:
        """With ``resume`` and a checkpoint in OUTPUT_DIR: restore everything and continue after its iteration.
        Otherwise load only the model weights of MODEL.WEIGHTS (if any) and start at iteration 0."""
        checkpoint = self.checkpointer.resume_or_load(self.cfg.MODEL.WEIGHTS, resume=resume)
        if resume and self.checkpointer.has_checkpoint():
            self.start_iter = checkpoint.get("iteration", -1) + 1
            self._resumed_metrics = dict(checkpoint.get(UNWRITTEN_METRICS, {}))
            logger.info("Resuming at iteration %d", self.start_iter)

    # ----------------------------------------------------------------------------------------------------- train
    def train(self) -> Dict[str, Dict[str, float]]:
        """Run the remaining iterations, evaluating every TEST.EVAL_PERIOD and at the end; returns the last results.

        Ctrl-C stops after the current iteration with a checkpoint of it; a second Ctrl-C at once, keeping the last
        checkpoint; a file system that refuses a write (full, over quota, read-only) stops too. Each is one
        UserError line saying which checkpoint is intact and how to resume.
        """
        self._done = self.start_iter - 1  # the last iteration whose update, checkpoint and evaluation are complete
        try:
            return self._train()
        except KeyboardInterrupt:  # a second Ctrl-C (Python's handler is back, engine/interrupt.py), or one before
            how = "at once (second Ctrl-C)" if self._stop.requested else "(Ctrl-C)"
            when = f"after iteration {self._done}" if self._done >= 0 else "before the first iteration finished"
            raise TrainingInterrupted(
                f"interrupted {how} {when}, without saving a checkpoint; "
                f"{self._last_checkpoint_note()}; resume with: {resume_command()}"
            ) from None
        except Exception as e:
            refused = file_system_refusal(e)
            if refused is None:
                raise
            intact, then = self._last_checkpoint_note(), f"resume with: {resume_command()}"
            raise output_write_error(refused, intact=intact, then=then, same_folder=True) from None

    def _train(self) -> Dict[str, Dict[str, float]]:
        cfg = self.cfg
        writers = default_writers(cfg.OUTPUT_DIR, self.max_iter) if comm.is_main_process() else []
        storage = MetricStorage()
        periodic = PeriodicCheckpointer(self.checkpointer, cfg.SOLVER.CHECKPOINT_PERIOD, max_iter=self.max_iter)
        results: Dict[str, Dict[str, float]] = {}
        if self.start_iter >= self.max_iter:
            try:
                return self._finish_ended_run(storage, writers)
            finally:
                for writer in writers:
                    writer.close()
        logger.info("Starting training from iteration %d", self.start_iter)
        try:
            self._write_lost_metrics_line(storage, writers)
            self.model.train()
            data_iter = iter(self.build_train_loader(cfg, self.start_iter))
            with self._stop:
                for iteration in range(self.start_iter, self.max_iter):
                    storage.iter = iteration
                    self.run_step(data_iter, iteration, storage)
                    # The scalars not yet in metrics.json go into the checkpoint: a run killed between the save and
                    # the write gets them back on resume (_write_lost_metrics_line).
                    periodic.step(iteration, **{UNWRITTEN_METRICS: storage.latest()})
                    last = iteration == self.max_iter - 1
                    results = self._evaluate_if_due(iteration, last, storage) or results
                    if last or (iteration + 1) % cfg.LOG_PERIOD == 0:
                        for writer in writers:
                            writer.write(storage)
                        storage.clear()
                    self._done = iteration
                    if self._stop_agreed and not last:
                        self._save_interrupted(self._done)
        except (TrainingInterrupted, LossNotFiniteError, KeyboardInterrupt):
            raise
        except Exception as e:
            # After a Ctrl-C, a failure of the next batch or collective (a loader worker hit before it could ignore
            # SIGINT, a peer rank gone) is part of the stop; the last complete iteration is still consistent.
            if not self._stop.requested or file_system_refusal(e) is not None:
                raise
            self._save_interrupted(self._done, agreed=False)
        finally:
            for writer in writers:
                writer.close()
        return results

    def _evaluate_if_due(self, iteration: int, last: bool, storage: MetricStorage) -> Dict[str, Dict[str, float]]:
        cfg = self.cfg
        period = cfg.TEST.EVAL_PERIOD
        if not cfg.DATASETS.TEST or not (last or (period > 0 and (iteration + 1) % period == 0)):
            return {}
        produced_by = training_provenance(cfg, self.checkpointer, iteration, last)
        results = self.test(cfg, self.model_without_ddp, produced_by)
        log_prediction_panels(storage, panel_model(cfg, self.model_without_ddp), cfg)
        storage.put_scalars(**_flatten_results(results))
        self.model.train()
        return results

    def _finish_ended_run(self, storage: MetricStorage, writers: List) -> Dict[str, Dict[str, float]]:
        """Resumed after the last iteration (killed while ``model_final.pth`` was being written, or an ended run):
        write what the last iteration writes — the final checkpoint and evaluation — instead of doing nothing."""
        final = os.path.join(self.cfg.OUTPUT_DIR, "model_final.pth")
        resumed = self.checkpointer.get_checkpoint_file()
        logger.info(
            "Resuming at iteration %d of SOLVER.MAX_ITER %d: no iteration left; finishing the run's outputs from %s",
            self.start_iter,
            self.max_iter,
            resumed,
        )
        if os.path.abspath(resumed) != os.path.abspath(final) or not os.path.isfile(final):
            unwritten = {UNWRITTEN_METRICS: self._resumed_metrics}
            self.checkpointer.save("model_final", iteration=self.start_iter - 1, **unwritten)
        storage.iter = self.start_iter - 1
        lost = self._metrics_line_lost()
        if lost:
            storage.put_scalars(**self._resumed_metrics)
        results = self._evaluate_if_due(storage.iter, True, storage)
        if results or lost:
            for writer in writers:
                writer.write(storage)
        return results

    def _metrics_line_lost(self) -> bool:
        """Whether the resumed checkpoint's iteration was due a metrics.json line that is not there: the run was
        killed after saving the checkpoint, before writing the line. Decided on the main process, for every rank
        (an evaluation may come with it)."""
        iteration = self.start_iter - 1
        due = iteration == self.max_iter - 1 or (iteration + 1) % self.cfg.LOG_PERIOD == 0
        lost = False
        if comm.is_main_process() and iteration >= 0 and due and self._resumed_metrics:
            lost = last_written_iteration(os.path.join(self.cfg.OUTPUT_DIR, METRICS_FILE)) < iteration
        return bool(comm.broadcast(lost)) if comm.get_world_size() > 1 else lost

    def _write_lost_metrics_line(self, storage: MetricStorage, writers: List) -> None:
        """Resumed mid-run: write the checkpoint iteration's lost metrics.json line (see :meth:`_metrics_line_lost`),
        with the evaluation that was due at it."""
        if not self._metrics_line_lost():
            return
        storage.iter = self.start_iter - 1
        logger.info("Writing the metrics of iteration %d, which the interrupted run had not written", storage.iter)
        storage.put_scalars(**self._resumed_metrics)
        self._evaluate_if_due(storage.iter, False, storage)
        for writer in writers:
            writer.write(storage)
        storage.clear()

    def _save_interrupted(self, done: int, agreed: bool = True) -> None:
        """Checkpoint the last complete iteration (atomically, as every save) and raise TrainingInterrupted.

        ``agreed``: every rank stopped at this iteration and may wait for the save; otherwise (a failure after the
        Ctrl-C) another rank may be inside a collective, and waiting for it could hang."""
        name = f"model_{done:07d}"
        path = os.path.join(self.cfg.OUTPUT_DIR, f"{name}.pth")
        if done < self.start_iter:
            raise TrainingInterrupted(
                f"interrupted before iteration {self.start_iter} finished; nothing new to save; run again with: "
                f"{resume_command()}"
            ) from None
        if os.path.abspath(self.checkpointer.get_checkpoint_file()) != os.path.abspath(path):
            self.checkpointer.save(name, iteration=done)
        if agreed:
            comm.synchronize()
        raise TrainingInterrupted(
            f"interrupted after iteration {done}; checkpoint saved to {path}; resume (at iteration {done + 1}) with: "
            f"{resume_command()}"
        ) from None

    def run_step(self, data_iter, iteration: int, storage: MetricStorage) -> None:
        start = time.perf_counter()
        batch = next(data_iter)
        data_time = time.perf_counter() - start
        self._note_skipped(batch)
        torch.manual_seed(iteration_seed(self.cfg.SEED, iteration, comm.get_rank()))
        with torch.autocast(
            self.device_type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None
        ):
            loss_dict = self.model(batch)
        losses = sum(loss_dict.values())
        reduced, skipped, stop = self._reduce_losses(loss_dict, self._skipped_count, self._stop.requested)
        self._stop_agreed = stop
        total = sum(reduced.values())
        if not math.isfinite(total):
            raise LossNotFiniteError(
                f"loss is {total} at iteration {iteration} ({_format(reduced)}); training stopped, "
                f"{self._last_checkpoint_note()} — lower SOLVER.BASE_LR or enable SOLVER.CLIP_GRADIENTS"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(losses).backward()
        self.scaler.unscale_(self.optimizer)
        self.clip_gradients(p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        storage.put_scalars(
            total_loss=total,
            **reduced,
            lr=lr,
            time=time.perf_counter() - start,
            data_time=data_time,
            max_mem_mb=_peak_memory_mb(self.device_type),
            skipped_samples=skipped,
        )

    def _note_skipped(self, batch: List[dict]) -> None:
        """Count the samples the loader replaced, and warn once per file, on the rank whose loader met it."""
        for d in batch:
            for name in d.get("skipped", ()):
                self._skipped_count += 1
                if name not in self._skipped_files:
                    self._skipped_files.add(name)
                    logger.warning(
                        "Skipped training sample %s: its image or mask is missing, unreadable or inconsistent; "
                        "another sample took its place (DATALOADER.SKIP_BAD_SAMPLES True). Check or remove the file",
                        name,
                    )

    def _last_checkpoint_note(self) -> str:
        """What is true of the checkpoints when training stops early: the last one intact, or none saved yet."""
        if self.checkpointer.has_checkpoint():
            return f"the last checkpoint {self.checkpointer.get_checkpoint_file()} is intact"
        return (
            f"no checkpoint was saved in {self.cfg.OUTPUT_DIR} yet (the first comes after "
            f"SOLVER.CHECKPOINT_PERIOD {self.cfg.SOLVER.CHECKPOINT_PERIOD} iterations)"
        )

    def _reduce_losses(
        self, loss_dict: Dict[str, torch.Tensor], skipped: int, stop: bool
    ) -> Tuple[Dict[str, float], int, bool]:
        """Mean of every loss over ranks as Python floats, the sum of the ranks' skipped-sample counts, and whether
        any rank asked to stop (Ctrl-C), in one small all-reduce per iteration."""
        names = sorted(loss_dict)
        losses = [loss_dict[k].detach().float() for k in names]
        counts = torch.tensor([float(skipped), float(stop)], device=losses[0].device)
        values = comm.all_reduce_sum(torch.cat([torch.stack(losses), counts]))
        values[:-2] /= comm.get_world_size()
        *means, total_skipped, stops = values.tolist()
        return dict(zip(names, means)), int(total_skipped), stops > 0

    # ------------------------------------------------------------------------------------------------------ test
    @classmethod
    def test(
        cls, cfg: CfgNode, model: nn.Module, produced_by: Optional[Provenance] = None
    ) -> Dict[str, Dict[str, float]]:
        """Evaluate ``model`` on every dataset of DATASETS.TEST; results per dataset name (single dataset: unnested).
        Every result file names ``produced_by`` (default: the weights of MODEL.WEIGHTS, as ``--eval-only`` loads).

        With TEST.AUG.EVAL_BOTH each dataset is evaluated twice, single-scale (results ``sem_seg``, files in
        ``inference/``) and multi-scale + flip (``sem_seg_ms_flip``, files in ``inference/ms_flip/``). With
        MODEL.MASK_FORMER.TEST.PANOPTIC_ON / INSTANCE_ON one pass gives every enabled task's results (``sem_seg``,
        ``panoptic_seg``, ``segm``).
        """
        results: Dict[str, Dict[str, float]] = OrderedDict()
        produced_by = produced_by or weights_provenance(cfg)
        passes = _inference_passes(cfg) if cfg.TEST.AUG.EVAL_BOTH else [("sem_seg", "", "", None)]
        for name in cfg.DATASETS.TEST:
            results[name] = {}
            for key, subdir, label, inference in passes:
                output_dir = os.path.join(cfg.OUTPUT_DIR, INFERENCE_DIR)
                if len(cfg.DATASETS.TEST) > 1:
                    output_dir = os.path.join(output_dir, name)
                evaluator = cls.build_evaluator(cfg, name, os.path.join(output_dir, subdir))
                runner = evaluation_model(cfg, model, name, inference)
                with results_produced_by(produced_by):
                    result = inference_on_dataset(runner, build_test_loader(cfg, name), evaluator)
                result = result if key == "sem_seg" else {key: result.get("sem_seg", {})}
                results[name].update(result)
                for task, metrics in result.items():
                    keys = LOGGED_METRICS.get(task, LOGGED_METRICS["sem_seg"])
                    shown = "" if task.startswith("sem_seg") else f" ({task})"
                    logger.info("Evaluation on %s%s%s: %s", name, label, shown, _format(metrics, keys=keys))
        return results[cfg.DATASETS.TEST[0]] if len(results) == 1 else results


def _inference_passes(cfg: CfgNode) -> List[Tuple[str, str, str, SegmentationInference]]:
    """(results key, output subfolder, log label, inference) of the single-scale and the multi-scale + flip pass."""
    passes = []
    for key, subdir, label, enabled in (
        ("sem_seg", "", " (single scale)", False),
        ("sem_seg_ms_flip", MULTI_SCALE_DIR, " (multi-scale + flip)", True),
    ):
        variant = cfg.clone()
        variant.defrost()
        variant.TEST.AUG.ENABLED = enabled
        passes.append((key, subdir, label, SegmentationInference.from_config(variant)))
    return passes


def _flatten_results(results: Dict, prefix: str = "") -> Dict[str, float]:
    flat: Dict[str, float] = {}
    for key, value in results.items():
        if isinstance(value, dict):
            flat.update(_flatten_results(value, f"{prefix}{key}/"))
        elif isinstance(value, (int, float)) and math.isfinite(value):
            flat[f"{prefix}{key}"] = float(value)
    return flat


def _format(values: Dict[str, float], keys: Optional[List[str]] = None) -> str:
    return ", ".join(f"{k}={values[k]:.4g}" for k in (keys or sorted(values)) if k in values)


def _peak_memory_mb(device_type: str) -> float:
    if device_type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
