"""The whole FreeMask pipeline on the embedded toy dataset, step by step, as the user's own commands.

Why the real CLIs, each in its own process: the pipeline is the end-to-end check of what a user types
(``freemask make-toy``, ``train``, ``filter``, ``resample`` with the shipped toy configs), so it must not take
private shortcuts into the library. Each step is ``python -m freemask <command>``, so it runs from an installed
package as from a checkout; its process is a fork of a server that has imported torch and timm
(``utils/forked_script.py``: the command runs as ``__main__`` as in a new interpreter), which saves ~8 s of imports
per step on 2 cores. Steps, in order::

    data             make-toy, only when <datasets>/toy is absent (never regenerated)
    generate         only with ``PipelineOptions.generation``: generate --backend tiny paints the
                     synthetic images of the real toy masks into <generated root>/toy/<SYN_DIR>, whose toy/<REAL_DIR>
                     links to the toy data's; every step runs with that root as DETECTRON2_DATASETS, so the steps
                     below read the generated pairs instead of the toy generator's, unchanged
    real             train, real images only; its model is the filter model
    filter           filter with that model -> <synthetic root>/annotations_filtered, class_loss.json
    filter_<v>       filter with another rule (FILTER_VARIANTS), reusing class_loss.json and its
                     histograms -> <output root>/filter_<v>/annotations/training, a dataset of its own
    resample         resample on the filtered split -> <synthetic root>/resampled_manifest.txt
    joint_raw, joint_filtered, joint_resampled     train, half real, half synthetic batches
    joint_filtered_<v>                             the same as joint_filtered on filter_<v>'s masks
    synpretrain, finetune                          train, synthetic pre-training then real fine-tuning
    real_seed<S>     train, real only with another SEED: the seed-to-seed noise of the table

Every training evaluates once, at its end (``TEST.EVAL_PERIOD 0``), into ``<output root>/<step>/inference/``.
``<output root>/steps/<step>.json`` records a step's command; a re-run skips a finished step whose command is the
same and whose outputs exist, continues an unfinished one (``train --resume``; ``filter`` resumes by
itself), and redoes a step from scratch with ``force`` or when a step it needs was (re)done in this run. A record
with another command, or of a run on the other synthetic images (the record of a generating run names its datasets
root), stops the run (the outputs belong to other settings) unless ``force``.
"""

import json
import os
import shlex
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

from ..commands import PROGRAM
from ..config import ConfigError
from ..data.datasets.synthetic import FILTERED_MASKS_DIR, IMAGES_DIR, MANIFEST_NAME
from ..data.datasets.toy import REAL_DIR, SYN_DIR, TOY_CLASSES
from ..engine.defaults import setup_cfg
from ..errors import Interrupted, UserError
from ..evaluation.sem_seg import INFERENCE_DIR, RESULTS_FILE
from ..model_zoo import get_config_file
from ..utils.atomic import atomic_write_bytes
from ..utils.forked_script import run_script

CONFIG_DIR = "configs/toy/semantic-segmentation"
REAL_CONFIG = f"{CONFIG_DIR}/semantic_fpn_R18_toy.yaml"
RESULTS = os.path.join(INFERENCE_DIR, RESULTS_FILE)
# Schedule keys scaled by --iters-scale (iteration counts of SOLVER).
_SCALED_KEYS = ("SOLVER.MAX_ITER", "SOLVER.WARMUP_ITERS", "SOLVER.CHECKPOINT_PERIOD")
_LOG_TAIL = 15
CLASSES_FILE = "classes.txt"
GENERATED_DATASETS = "generated_datasets"  # <output root>/<this>: DETECTRON2_DATASETS of a generating run
GENERATION_MANIFEST = "generation_manifest.json"  # written by the generate command into its output root


class PipelineError(UserError, RuntimeError):
    """A step that failed or outputs that belong to other settings; the message names the step, its log and the fix."""


@dataclass(frozen=True)
class Training:
    """One training run of the table: its step name, toy config and the steps whose outputs it reads."""

    name: str
    config: str
    needs: Tuple[str, ...]  # "synthetic": the step that made the synthetic images (PipelineOptions.synthetic_step)
    weights_from: Optional[str] = None  # step whose model_final.pth initialises this run


TRAININGS = (
    Training("real", REAL_CONFIG, ("data",)),
    Training("joint_raw", f"{CONFIG_DIR}/semantic_fpn_R18_toy_joint.yaml", ("synthetic",)),
    Training("joint_filtered", f"{CONFIG_DIR}/semantic_fpn_R18_toy_joint_filtered.yaml", ("filter",)),
    Training("joint_resampled", f"{CONFIG_DIR}/semantic_fpn_R18_toy_joint_resampled.yaml", ("resample",)),
    Training("synpretrain", f"{CONFIG_DIR}/semantic_fpn_R18_toy_synpretrain.yaml", ("resample",)),
    Training("finetune", f"{CONFIG_DIR}/semantic_fpn_R18_toy_finetune.yaml", ("synpretrain",), "synpretrain"),
)


@dataclass(frozen=True)
class FilterVariant:
    """Another filter rule beside the published one: its name (``filter_<name>``, ``joint_filtered_<name>`` steps)
    and the flags of the filter command that make it."""

    name: str
    flags: Tuple[str, ...]


FILTER_VARIANTS = (
    FilterVariant("quantile", ("--rule", "quantile", "--clean-rate", "0.02")),
    FilterVariant("quantile_band2", ("--rule", "quantile", "--clean-rate", "0.02", "--boundary-band", "2")),
)


@dataclass(frozen=True)
class Generation:
    """The ``generate`` step's settings: the generate command's tiny random model (it paints noise, so a generating
    run checks the chain mask -> image -> filter -> resample -> train, not the method) at the toy data's shape."""

    seeds: int  # images per real mask (seeds 42, 43, ...): the toy data's count, so re-sampling sees the same copies
    size: int  # image side in pixels: the toy data's
    steps: int = 2  # sampling steps


@dataclass(frozen=True)
class PipelineOptions:
    working_dir: str  # the steps run there (the user's, never the package's folder); configs from freemask.model_zoo
    output_root: str
    datasets_root: str  # the toy data (the data step makes it); DETECTRON2_DATASETS of every step unless generating
    iters_scale: float = 1.0
    noise_seeds: Sequence[int] = (43,)
    max_copies: int = 20
    opts: Sequence[str] = ()  # config overrides for every training and the filter (the model must match)
    force: bool = False
    generation: Optional[Generation] = None  # None: the toy generator's synthetic images
    only: Tuple[str, ...] = ()  # run just these steps and those they need (select_steps); empty: every step

    @property
    def steps_datasets_root(self) -> str:
        """DETECTRON2_DATASETS of every step: the toy data, or the generated root whose toy/<REAL_DIR> links to it."""
        return os.path.join(self.output_root, GENERATED_DATASETS) if self.generation else self.datasets_root

    @property
    def synthetic_step(self) -> str:
        """The step that made the synthetic images the filter and the joint trainings read."""
        return "generate" if self.generation else "data"

    @property
    def synthetic_root(self) -> str:
        return os.path.join(self.steps_datasets_root, "toy", SYN_DIR)

    def step_dir(self, name: str) -> str:
        return os.path.join(self.output_root, name)

    def variant_root(self, variant: FilterVariant) -> str:
        """A custom dataset (DATASETS.CUSTOM layout): images/training links to the synthetic images, the variant's
        filter writes annotations/training."""
        return self.step_dir(f"filter_{variant.name}")


@dataclass
class Step:
    """A command of the pipeline. ``argv`` (the freemask command, then its arguments) is what the record compares;
    ``resume_flag`` / ``redo_flag`` follow the command name when continuing / redoing a run."""

    name: str
    argv: List[str]
    needs: Tuple[str, ...]
    outputs: Tuple[str, ...]
    resume_flag: Optional[str] = None
    redo_flag: Optional[str] = None
    only_if_missing: bool = False  # input data: made when absent, never redone
    eval_argv: List[str] = field(default_factory=list)  # training: evaluate model_final.pth when only that is left

    def command(self, mode: str) -> List[str]:
        """argv for mode 'first' (never started), 'resume' or 'redo'."""
        if mode == "resume" and self.eval_argv and os.path.isfile(self.outputs[0]):
            return self.eval_argv  # killed during the final evaluation: training itself is complete
        flag = {"resume": self.resume_flag, "redo": self.redo_flag}.get(mode)
        return self.argv[:1] + ([flag] if flag else []) + self.argv[1:]  # before the trailing KEY VALUE pairs


# ------------------------------------------------------------------------------------------------------------ plan
def scaled_schedule(config: str, opts: Sequence[str], scale: float) -> List[str]:
    """``KEY VALUE`` overrides multiplying the config's iteration counts by ``scale`` (none when it is 1)."""
    if scale == 1:
        return []
    try:
        cfg = setup_cfg(config, list(opts))
    except ConfigError as e:
        raise PipelineError(str(e)) from None
    overrides: List[str] = []
    for key in _SCALED_KEYS:
        section, name = key.split(".")
        value = round(cfg[section][name] * scale)
        overrides += [key, str(value if key.endswith("WARMUP_ITERS") else max(1, value))]
    return overrides


def _training_step(options: PipelineOptions, run: Training, name: str, extra: Sequence[str] = ()) -> Step:
    out = options.step_dir(name)
    needs = tuple(options.synthetic_step if need == "synthetic" else need for need in run.needs)
    config = get_config_file(run.config)  # the shipped file: the checkout's configs/ or the installed package's
    keys = ["OUTPUT_DIR", out, *scaled_schedule(config, options.opts, options.iters_scale), "TEST.EVAL_PERIOD", "0"]
    if run.weights_from:
        keys += ["MODEL.WEIGHTS", os.path.join(options.step_dir(run.weights_from), "model_final.pth")]
    keys += [*extra, *options.opts]
    final = os.path.join(out, "model_final.pth")
    evaluate = ["train", "--config-file", run.config, "--eval-only", *keys, "MODEL.WEIGHTS", final]
    return Step(
        name,
        ["train", "--config-file", run.config, *keys],
        needs,
        (final, os.path.join(out, RESULTS)),
        resume_flag="--resume",
        eval_argv=evaluate,
    )


def variant_dataset(options: PipelineOptions, variant: FilterVariant) -> List[str]:
    """``KEY VALUE`` overrides registering a variant's masks as ``filter_<name>_sem_seg_train`` and training on them
    as the synthetic split."""
    root = options.variant_root(variant)
    return [
        "DATASETS.TRAIN_SYN", f"('filter_{variant.name}_sem_seg_train',)",
        "DATASETS.CUSTOM.NAME", f"filter_{variant.name}", "DATASETS.CUSTOM.ROOT", root,
        "DATASETS.CUSTOM.CLASSES_FILE", os.path.join(root, CLASSES_FILE),
        "DATASETS.CUSTOM.REDUCE_ZERO_LABEL", "True",
    ]  # fmt: skip


def prepare_variant_root(options: PipelineOptions, variant: FilterVariant) -> None:
    """The variant's dataset folder: the class file and a link to the synthetic images (idempotent)."""
    root = options.variant_root(variant)
    images = os.path.join(root, "images", "training")
    os.makedirs(os.path.dirname(images), exist_ok=True)
    if not os.path.islink(images):
        os.symlink(os.path.join(options.synthetic_root, IMAGES_DIR), images)
    atomic_write_bytes(os.path.join(root, CLASSES_FILE), ("\n".join(TOY_CLASSES) + "\n").encode())


def prepare_generated_root(options: PipelineOptions) -> None:
    """The generating run's datasets root: toy/<REAL_DIR> links to the toy data's real images (idempotent; the link
    may point at data the data step is still to make), toy/<SYN_DIR> is the generate step's output."""
    real = os.path.join(options.steps_datasets_root, "toy", REAL_DIR)
    target = os.path.join(options.datasets_root, "toy", REAL_DIR)
    os.makedirs(os.path.dirname(real), exist_ok=True)
    if not os.path.islink(real):
        os.symlink(target, real)
    elif os.readlink(real) != target:
        raise PipelineError(
            f"{real} links to {os.readlink(real)}, not to this run's toy data {target}: its steps were run on "
            f"other real images; choose another --output-root (or the --datasets-root of that run)"
        )


def _generate_step(options: PipelineOptions, generation: Generation) -> Step:
    syn = options.synthetic_root
    argv = ["generate", "--backend", "tiny", "--real-dataset", "toy_sem_seg_train", "--output", syn]
    argv += ["--seeds", str(generation.seeds), "--size", str(generation.size), "--steps", str(generation.steps)]
    argv += ["--no-progress"]
    outputs = (os.path.join(syn, IMAGES_DIR), os.path.join(syn, GENERATION_MANIFEST))
    return Step("generate", argv, ("data",), outputs, redo_flag="--overwrite")  # resumes by itself


def _variant_steps(options: PipelineOptions, filter_argv: List[str], class_loss: str) -> List[Step]:
    steps = []
    for variant in FILTER_VARIANTS:
        masks = os.path.join(options.variant_root(variant), "annotations", "training")
        argv = [*filter_argv[: filter_argv.index("MODEL.WEIGHTS")], "--class-loss", class_loss, *variant.flags]
        argv += ["--output", masks, *filter_argv[filter_argv.index("MODEL.WEIGHTS") :]]
        outputs = (masks, os.path.join(os.path.dirname(masks), "filter_stats.json"))
        steps.append(Step(f"filter_{variant.name}", argv, ("filter",), outputs, redo_flag="--overwrite"))
    return steps


def plan_steps(options: PipelineOptions) -> List[Step]:
    """Every step in execution order."""
    syn = options.synthetic_root
    class_loss = os.path.join(syn, "class_loss.json")
    real_model = os.path.join(options.step_dir("real"), "model_final.pth")
    names = ["--real-dataset", "toy_sem_seg_train", "--syn-dataset"]
    filter_argv = ["filter", "--config-file", REAL_CONFIG, *names, "toy_syn_sem_seg_train"]
    filter_argv += ["--no-progress", "MODEL.WEIGHTS", real_model, *options.opts]
    resample_argv = ["resample", *names, "toy_syn_filtered_sem_seg_train", "--class-loss", class_loss]
    resample_argv += ["--max-copies", str(options.max_copies), "--no-progress"]
    filter_outputs = (os.path.join(syn, FILTERED_MASKS_DIR), class_loss, os.path.join(syn, "filter_stats.json"))
    toy_meta = os.path.join(options.datasets_root, "toy", "meta.json")
    steps = [
        Step(
            "data",
            ["make-toy", "--root", options.datasets_root],
            (),
            (toy_meta,),
            only_if_missing=True,
        ),
        *([_generate_step(options, options.generation)] if options.generation else []),
        _training_step(options, TRAININGS[0], "real"),
        Step("filter", filter_argv, ("real", options.synthetic_step), filter_outputs, redo_flag="--overwrite"),
        *_variant_steps(options, filter_argv, class_loss),
        Step("resample", resample_argv, ("filter",), (os.path.join(syn, MANIFEST_NAME),)),
    ]
    steps += [_training_step(options, run, run.name) for run in TRAININGS[1:]]
    joint_filtered = next(run for run in TRAININGS if run.name == "joint_filtered")
    for variant in FILTER_VARIANTS:
        run = Training(f"joint_filtered_{variant.name}", joint_filtered.config, (f"filter_{variant.name}",))
        steps.append(_training_step(options, run, run.name, variant_dataset(options, variant)))
    steps += [
        _training_step(options, TRAININGS[0], f"real_seed{seed}", ["SEED", str(seed)]) for seed in options.noise_seeds
    ]
    return steps


def select_steps(steps: List[Step], only: Sequence[str]) -> List[Step]:
    """The steps named in ``only`` and every step they need, in execution order (all of them when ``only`` is
    empty): a short run through one chain, e.g. ``joint_resampled`` is data, real, filter, resample and itself."""
    if not only:
        return steps
    by_name = {step.name: step for step in steps}
    unknown = [name for name in only if name not in by_name]
    if unknown:
        raise PipelineError(f"no step named {', '.join(unknown)}; the steps are {', '.join(by_name)}")
    wanted: Set[str] = set()
    todo = list(only)
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo.extend(by_name[name].needs)
    return [step for step in steps if step.name in wanted]


# ------------------------------------------------------------------------------------------------------------- run
def _record_path(options: PipelineOptions, name: str) -> str:
    return os.path.join(options.output_root, "steps", f"{name}.json")


def read_record(options: PipelineOptions, name: str) -> Optional[Dict]:
    path = _record_path(options, name)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _record_datasets(options: PipelineOptions) -> Optional[str]:
    """The datasets root a record names: a generating run's (its steps read other synthetic images under the same
    commands); None, and no key in the record, for a run on the toy generator's images."""
    return options.steps_datasets_root if options.generation else None


def _write_record(options: PipelineOptions, step: Step, finished: bool, seconds: Optional[float]) -> None:
    record = {"command": step.argv, "finished": finished, "seconds": seconds}
    if _record_datasets(options):
        record["datasets"] = _record_datasets(options)
    atomic_write_bytes(_record_path(options, step.name), (json.dumps(record, indent=1) + "\n").encode())


def shown_command(argv: Sequence[str], working_dir: str) -> str:
    """The command as a user would type it in ``working_dir`` (paths inside it made relative)."""
    inside = os.path.join(working_dir, "")
    return shlex.join([PROGRAM, *(os.path.relpath(a, working_dir) if a.startswith(inside) else a for a in argv)])


def _decide(options: PipelineOptions, step: Step, redone: Set[str]) -> Optional[str]:
    """None to skip the step, else the mode to run it in ('first', 'resume' or 'redo')."""
    done = all(os.path.exists(p) for p in step.outputs)
    if step.only_if_missing:
        return None if done else "first"
    record = read_record(options, step.name)
    if options.force or any(n in redone for n in step.needs):
        return "redo"
    if record is None:
        return "first"
    if record["command"] != step.argv or record.get("datasets") != _record_datasets(options):
        shown = shown_command(record["command"], options.working_dir)
        if record.get("datasets") != _record_datasets(options):
            shown += f" with DETECTRON2_DATASETS={record.get('datasets') or options.datasets_root}"
        raise PipelineError(
            f"step {step.name} was run with another command ({_record_path(options, step.name)}): {shown}; pass "
            f"--force to redo every step with the current settings, or choose another --output-root"
        )
    if record["finished"]:
        return None if done else "redo"
    return "resume"


def _log_tail(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return "".join(f.readlines()[-_LOG_TAIL:])


def _execute(options: PipelineOptions, step: Step, mode: str, log: Callable[[str], None]) -> float:
    argv = step.command(mode)
    log_path = os.path.join(options.output_root, "steps", f"{step.name}.log")
    shown = shown_command(argv, options.working_dir)
    log(f"  $ DETECTRON2_DATASETS={shlex.quote(options.steps_datasets_root)} {shown}")
    env = {**os.environ, "DETECTRON2_DATASETS": options.steps_datasets_root}
    start = time.perf_counter()
    with open(log_path, "a", encoding="utf-8") as out:
        out.write(f"\n### {time.strftime('%Y-%m-%d %H:%M:%S')} ({mode}): {shown}\n")
    try:
        code = run_script(
            ["-m", PROGRAM, *argv], stdout=log_path, stderr=log_path, env=env, cwd=options.working_dir
        )
    except KeyboardInterrupt:  # the step got the Ctrl-C too (same terminal) and stopped at its own safe point
        raise Interrupted(
            f"interrupted (Ctrl-C) during step {step.name} (its log: {log_path}); finished steps are kept: run the "
            f"same command again to skip them and continue {step.name}"
        ) from None
    if code != 0:
        log(f"  last lines of {log_path}:\n{_log_tail(log_path)}")
        raise PipelineError(
            f"step {step.name} failed (exit {code}); the reason is at the end of {log_path}. Fix it and "
            f"re-run the same command: finished steps are skipped"
        )
    missing = [p for p in step.outputs if not os.path.exists(p)]
    if missing:
        raise PipelineError(f"step {step.name} finished without writing {', '.join(missing)}; see {log_path}")
    return time.perf_counter() - start


def run_pipeline(options: PipelineOptions, log: Callable[[str], None] = print) -> Dict[str, str]:
    """Run every (selected) step that is not already done; returns step name -> 'skipped' | 'ran'."""
    steps = select_steps(plan_steps(options), options.only)
    os.makedirs(os.path.join(options.output_root, "steps"), exist_ok=True)
    if options.generation:
        prepare_generated_root(options)
    for variant in FILTER_VARIANTS:
        prepare_variant_root(options, variant)
    redone: Set[str] = set()
    outcome: Dict[str, str] = {}
    for index, step in enumerate(steps, 1):
        mode = _decide(options, step, redone)
        if mode is None:
            log(f"[{index}/{len(steps)}] {step.name}: done already, skipped")
            outcome[step.name] = "skipped"
            continue
        log(f"[{index}/{len(steps)}] {step.name}: running ({mode})")
        if not step.only_if_missing:
            _write_record(options, step, finished=False, seconds=None)
        seconds = _execute(options, step, mode, log)
        if not step.only_if_missing:
            _write_record(options, step, finished=True, seconds=seconds)
        log(f"[{index}/{len(steps)}] {step.name}: finished in {seconds:.0f} s")
        redone.add(step.name)
        outcome[step.name] = "ran"
    return outcome
