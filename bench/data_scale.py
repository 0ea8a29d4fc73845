#!/usr/bin/env python
"""Data at FreeMask's real scale (issue 26): records memory per rank and per loader worker, start-up to the first
training batch, and the filter's start-up and resume, on fake dataset trees of FreeMask's sizes.

    python bench/data_scale.py --root /work/scratch/bench/data_scale                      # 600, 20k, 400k, 710k
    python bench/data_scale.py --root R --sizes 600,710k --ranks 2 --workers 4 --skip-filter --out after.json
    python bench/data_scale.py --root R --code /path/to/other/checkout                   # measure other code

Sizes (bench/_data_tree.py): ``600`` is a 600-record ADE20K-like set (the small-dataset baseline); ``20k``,
``400k`` are that many ADE20K-Synthetic pairs beside ADE20K's 20,210 real images; ``710k`` COCO-Synthetic pairs
beside COCO-Stuff-164K's 118,287 (828k joint records). Each tree is hard links of four 128x128 toy images, built once
under --root and reused (its build time is printed).

Training: the real entry point (train_net.py through bench/_first_batch.py, which only marks the first batch) with
configs/toy/semantic-segmentation/semantic_fpn_R18_toy.yaml, DATASETS.TRAIN / TRAIN_SYN the fake datasets,
DATALOADER.SYN_RATIO 0.5. Start-up is the wall time from the command's launch to the last rank's first batch; USS
(bench/_proc_memory.py) is read 2 s later, with every rank holding its first batch and its workers alive.
FREEMASK_CACHE_DIR points under --root: the table says whether a listing cache was there before the run (warm),
written by it (cold) or not used (-).

Filter: tools/filter_syn.py over the synthetic pairs, one process, a random toy model (saved once under --root) and
class losses from an earlier tiny run (--class-loss: pass 1 skipped); start-up is the time to its first filtered mask
on disk; the run is then killed and resumed with the same command, and the resume timed to its first new mask.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _data_tree import TreeSpec, ensure_tree, parse_size, toy_sources  # noqa: E402
from _proc_memory import job_memory  # noqa: E402
from _scale_report import combine_rounds, mean_gb, must_show, print_tables  # noqa: E402

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
CONFIG = "configs/toy/semantic-segmentation/semantic_fpn_R18_toy.yaml"
SETTLE_S = 2.0


def cache_dir(root: str, spec: TreeSpec) -> str:
    """FREEMASK_CACHE_DIR of runs over ``spec``'s tree: one per tree, so a listing cached for one size is not
    another's."""
    return os.path.join(root, "cache", spec.name)


def code_env(code: str, root: str, spec: Optional[TreeSpec], tree: Optional[str]) -> Dict[str, str]:
    env = {**os.environ, "PYTHONPATH": code, "OMP_NUM_THREADS": "1", "FREEMASK_BENCH_CODE": code}
    if tree is not None:
        env["DETECTRON2_DATASETS"] = tree
        env["FREEMASK_CACHE_DIR"] = cache_dir(root, spec)
    return env


def shm_used() -> int:
    """Bytes in use on /dev/shm: shared-memory segments no process maps (made by a rank, read later by its workers)
    are in nobody's PSS, so the job's growth of /dev/shm is read beside it (other jobs on the machine add noise)."""
    try:
        return shutil.disk_usage("/dev/shm").used
    except OSError:
        return 0


def _folder_has_files(folder: str) -> bool:
    return os.path.isdir(folder) and any(files for _, _, files in os.walk(folder))


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the command's own process group (it was started in a new session), then reap it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def _log_tail(path: str, lines: int = 25) -> str:
    with open(path, errors="replace") as f:
        return "".join(f.readlines()[-lines:])


def training_overrides(spec: TreeSpec, workers: int, output: str) -> List[str]:
    return [
        "DATASETS.TRAIN", f"('{spec.train_dataset}',)",
        "DATASETS.TRAIN_SYN", f"('{spec.syn_dataset}',)",
        "DATASETS.TEST", "()",
        "DATALOADER.SYN_RATIO", "0.5",
        "DATALOADER.NUM_WORKERS", str(workers),
        "MODEL.SEM_SEG_HEAD.NUM_CLASSES", str(spec.num_classes),
        "SOLVER.IMS_PER_BATCH", "4",
        "SOLVER.MAX_ITER", "10",
        "SOLVER.CHECKPOINT_PERIOD", "100000",
        "TEST.EVAL_PERIOD", "0",
        "OUTPUT_DIR", output,
    ]  # fmt: skip


def measure_training(code: str, root: str, spec: TreeSpec, tree: str, ranks: int, workers: int, timeout: float) -> Dict:
    """Start-up to the first batch and USS of ranks and workers for one (size, ranks, workers)."""
    run_dir = os.path.join(root, "runs", f"{spec.name}_r{ranks}_w{workers}")
    shutil.rmtree(run_dir, ignore_errors=True)
    markers = os.path.join(run_dir, "markers")
    os.makedirs(markers)
    env = code_env(code, root, spec, tree)
    env["FREEMASK_BENCH_MARKERS"] = markers
    cache = env["FREEMASK_CACHE_DIR"]
    cache_before = _folder_has_files(cache)
    command = [sys.executable, os.path.join(BENCH, "_first_batch.py"), "--config-file", os.path.join(code, CONFIG)]
    command += ["--num-gpus", str(ranks), *training_overrides(spec, workers, os.path.join(run_dir, "output"))]
    log = os.path.join(run_dir, "log.txt")
    shm_before = shm_used()
    with open(log, "w") as out:
        start = time.time()
        proc = subprocess.Popen(
            command, env=env, cwd=code, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        found: List[Dict] = []
        while len(found) < ranks:
            if proc.poll() is not None:
                raise RuntimeError(f"training exited ({proc.returncode}) before its first batch:\n{_log_tail(log)}")
            if time.time() - start > timeout:
                raise RuntimeError(f"no first batch within {timeout:.0f} s; log {log}")
            time.sleep(0.2)
            names = [n for n in os.listdir(markers) if n.endswith(".json")]
            found = [json.load(open(os.path.join(markers, n))) for n in names]
        startup = max(m["time"] for m in found) - start
        time.sleep(SETTLE_S)
        memory = job_memory(proc.pid, [m["pid"] for m in found])
        shm_added = max(0, shm_used() - shm_before)
    finally:
        _kill_group(proc)
    cache_after = _folder_has_files(cache)
    return {
        "size": spec.name, "joint": spec.joint, "synthetic": spec.synthetic, "ranks": ranks, "workers": workers,
        "startup_s": round(startup, 2),
        "rank_uss": memory["rank"], "worker_uss": memory["worker"], "total_pss": sum(memory["pss"]),
        "shm_added": shm_added,
        "cache": "warm" if cache_before else ("cold" if cache_after else "-"),
    }  # fmt: skip


def _first_new_mask(folder: str, before: set) -> bool:
    if not os.path.isdir(folder):
        return False
    with os.scandir(folder) as entries:
        return any(e.name.endswith(".png") and not e.name.startswith(".") and e.name not in before for e in entries)


def _masks_in(folder: str) -> set:
    with os.scandir(folder) as entries:
        return {e.name for e in entries if e.name.endswith(".png") and not e.name.startswith(".")}


def _run_filter_until_mask(command: List[str], env: Dict, code: str, output: str, log: str, timeout: float) -> float:
    """Seconds from launching ``command`` to its first filtered mask not already in ``output``; killed then."""
    before = _masks_in(output) if os.path.isdir(output) else set()
    with open(log, "a") as out:
        start = time.time()
        proc = subprocess.Popen(
            command, env=env, cwd=code, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        while not _first_new_mask(output, before):
            if proc.poll() is not None:
                raise RuntimeError(f"filter exited ({proc.returncode}) before its first mask:\n{_log_tail(log)}")
            if time.time() - start > timeout:
                raise RuntimeError(f"no filtered mask within {timeout:.0f} s; log {log}")
            time.sleep(0.1)
        return time.time() - start
    finally:
        _kill_group(proc)


def filter_prerequisites(code: str, root: str, spec: TreeSpec, toy_root: str, timeout: float) -> Dict[str, str]:
    """A random toy model of ``spec``'s classes and its class losses from a filter run over the 4 toy pairs, made
    once per code version under ``root/filter_inputs`` (the filter's files are that code's): the timed runs skip pass
    1 (--class-loss) and read only the synthetic set."""
    version = code_version(code).replace(" ", "_").replace("(", "").replace(")", "")
    folder = os.path.join(root, "filter_inputs", f"{spec.family}_{spec.num_classes}_{version}")
    weights, class_loss = os.path.join(folder, "model.pth"), os.path.join(folder, "class_loss.json")
    if os.path.isfile(class_loss):
        return {"weights": weights, "class_loss": class_loss}
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    env = code_env(code, root, None, None)
    save = (
        "import sys, torch; from freemask.config import get_cfg; from freemask.modeling import build_model\n"
        "cfg = get_cfg(); cfg.merge_from_file(sys.argv[1]); cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = int(sys.argv[2])\n"
        "cfg.MODEL.BACKBONE.PRETRAINED = ''; torch.manual_seed(0)\n"
        "torch.save({'model': build_model(cfg).state_dict()}, sys.argv[3])\n"
    )
    subprocess.run([sys.executable, "-c", save, CONFIG, str(spec.num_classes), weights], env=env, cwd=code, check=True)
    toy = os.path.join(toy_root, "toy", "ADEChallengeData2016")
    command = [sys.executable, "tools/filter_syn.py", "--config-file", CONFIG, "--no-progress", "--no-diagnostic"]
    command += ["--real-img-path", os.path.join(toy, "images", "training")]
    command += ["--real-mask-path", os.path.join(toy, "annotations", "training")]
    command += ["--syn-img-path", os.path.join(toy, "images", "training")]
    command += ["--syn-mask-path", os.path.join(toy, "annotations", "training")]
    command += ["--reduce-zero-label", "--output", os.path.join(folder, "filtered")]
    command += ["MODEL.WEIGHTS", weights, "MODEL.SEM_SEG_HEAD.NUM_CLASSES", str(spec.num_classes)]
    subprocess.run(command, env=env, cwd=code, check=True, timeout=timeout, stdout=subprocess.DEVNULL)
    return {"weights": weights, "class_loss": class_loss}


def measure_filter(
    code: str, root: str, spec: TreeSpec, tree: str, workers: int, toy_root: str, timeout: float
) -> Dict:
    """Filter start-up to its first mask, then (killed) the resume's start-up to its first new mask."""
    inputs = filter_prerequisites(code, root, spec, toy_root, timeout)
    run_dir = os.path.join(root, "runs", f"{spec.name}_filter_w{workers}")
    shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(run_dir)
    output = os.path.join(run_dir, "filtered")
    command = [sys.executable, "tools/filter_syn.py", "--config-file", CONFIG, "--no-progress", "--no-diagnostic"]
    command += ["--real-dataset", spec.train_dataset, "--syn-dataset", spec.syn_dataset]
    command += ["--class-loss", inputs["class_loss"], "--output", output, "--num-workers", str(workers)]
    command += ["MODEL.WEIGHTS", inputs["weights"], "MODEL.SEM_SEG_HEAD.NUM_CLASSES", str(spec.num_classes)]
    env = code_env(code, root, spec, tree)
    log = os.path.join(run_dir, "log.txt")
    cache_before = _folder_has_files(env["FREEMASK_CACHE_DIR"])
    first = _run_filter_until_mask(command, env, code, output, log, timeout)
    cache = "warm" if cache_before else ("cold" if _folder_has_files(env["FREEMASK_CACHE_DIR"]) else "-")
    resumed = _run_filter_until_mask(command, env, code, output, log, timeout)
    shutil.rmtree(output, ignore_errors=True)  # thousands of masks at most; the logs stay
    tree_keys = {"size": spec.name, "joint": spec.joint, "synthetic": spec.synthetic}
    return {**tree_keys, "workers": workers, "cache": cache, "start_s": round(first, 2), "resume_s": round(resumed, 2)}


def code_version(code: str) -> str:
    try:
        head = subprocess.run(["git", "-C", code, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", code, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()  # fmt: skip
        return head.stdout.strip() + (" (uncommitted changes)" if dirty else "")
    except OSError:
        return "unknown"


def sizes_arg(text: str) -> List[TreeSpec]:
    try:
        return [parse_size(t) for t in text.split(",") if t.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def ints_arg(text: str) -> List[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected integers >= 0 separated by commas, got {text!r}")
    return values


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=os.path.join(tempfile.gettempdir(), "freemask_data_scale"),
                        help="folder of the fake trees (reused), caches and run logs")  # fmt: skip
    parser.add_argument(
        "--sizes",
        type=sizes_arg,
        default=sizes_arg("600,20k,400k,710k"),
        help="comma-separated sizes: 600 (baseline), 20k, 400k (ADE20K), 710k (COCO), ade:N, coco:N",
    )
    parser.add_argument("--ranks", type=ints_arg, default=[1, 2], help="--num-gpus values (gloo processes on CPU)")
    parser.add_argument("--workers", type=ints_arg, default=[0, 4], help="DATALOADER.NUM_WORKERS values")
    parser.add_argument("--filter-workers", type=int, default=4, help="filter_syn.py --num-workers")
    parser.add_argument("--skip-filter", action="store_true", help="measure training only")
    parser.add_argument("--skip-train", action="store_true", help="measure the filter only")
    parser.add_argument(
        "--filter-min-synthetic",
        type=int,
        default=100_000,
        help="filter only trees with at least this many synthetic pairs (and the baseline)",
    )
    parser.add_argument("--code", default=REPO, help="repository whose train_net.py / tools are measured")
    parser.add_argument(
        "--cold-cache", action="store_true", help="empty FREEMASK_CACHE_DIR before every run (default: kept, warm)"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds of the training runs (alternating); fastest start-up shown"
    )
    parser.add_argument("--timeout", type=float, default=1200, help="seconds one run may take to its first batch")
    parser.add_argument("--out", help="write every measurement to this JSON file")
    args = parser.parse_args(argv)
    code, root = os.path.abspath(args.code), os.path.abspath(args.root)
    os.makedirs(root, exist_ok=True)

    toy_root = os.path.join(root, "toy_sources")
    if not os.path.isdir(os.path.join(toy_root, "toy")):
        subprocess.run([sys.executable, "tools/make_toy_dataset.py", "--root", toy_root, "--num-train", "4",
                        "--num-val", "1", "--seeds", "1"], env=code_env(code, root, None, None), cwd=code,
                       check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    images, masks = toy_sources(toy_root)
    trees = {}
    for spec in args.sizes:
        folder, seconds, built = ensure_tree(root, spec, images, masks)
        what = "built" if built else "reusing (built once"
        print(f"{spec.name}: {spec.joint} joint records, {what} in {seconds:.0f} s{'' if built else ')'}: {folder}")
        trees[spec] = folder

    version = code_version(code)
    print(f"code: {code} at {version}; {os.cpu_count()} CPUs; {platform.platform()}", flush=True)
    runs, filters = [], []
    for round_index in range(args.repeat):
        for spec, tree in trees.items():
            if not args.skip_train:
                for ranks in args.ranks:
                    for workers in args.workers:
                        if args.cold_cache:
                            shutil.rmtree(cache_dir(root, spec), ignore_errors=True)
                        m = measure_training(code, root, spec, tree, ranks, workers, args.timeout)
                        print(
                            f"  {spec.name} {ranks} ranks x {workers} workers: start-up {m['startup_s']} s, rank "
                            f"USS {mean_gb(m['rank_uss'])} GB, worker USS {mean_gb(m['worker_uss'])} GB",
                            flush=True,
                        )
                        runs.append(m)
            wanted = spec.joint < 1000 or spec.synthetic >= args.filter_min_synthetic
            if not args.skip_filter and wanted and round_index == 0:
                if args.cold_cache:
                    shutil.rmtree(cache_dir(root, spec), ignore_errors=True)
                f = measure_filter(code, root, spec, tree, args.filter_workers, toy_root, args.timeout)
                print(f"  {spec.name} filter: start {f['start_s']} s, resume {f['resume_s']} s", flush=True)
                filters.append(f)
    train = combine_rounds(runs)

    print()
    print_tables(train, filters)
    print()
    for line in must_show(train, filters):
        print(line)
    if args.out:
        result = {"code": code, "version": version, "date": datetime.datetime.utcnow().isoformat(timespec="seconds"),
                  "cpus": os.cpu_count(), "training": train, "runs": runs, "filter": filters}  # fmt: skip
        with open(args.out + ".tmp", "w") as f:
            json.dump(result, f, indent=1)
        os.replace(args.out + ".tmp", args.out)


if __name__ == "__main__":
    main()
