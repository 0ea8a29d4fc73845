"""Worker processes die with their command: ``kill -9`` of a ``datasets/prepare_*.py --workers 2`` run leaves no
worker writing for a run that no longer exists."""

import os
import signal
import time

import cv2
import numpy as np
import pytest

from freemask.utils.forked_script import start_script

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def children(pid):
    """Pids of the running processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry))
    return found


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def raw_ade20k(root, count):
    """ADE20K raw masks, ``count`` names of one large noisy mask (hard links: slow to convert, quick to make)."""
    training = root / "ADEChallengeData2016" / "annotations" / "training"
    validation = root / "ADEChallengeData2016" / "annotations" / "validation"
    training.mkdir(parents=True)
    validation.mkdir(parents=True)
    mask = np.random.default_rng(0).integers(0, 151, size=(1200, 1200), dtype=np.uint8)
    source = root / "source.png"
    cv2.imwrite(str(source), mask)
    for i in range(count):
        os.link(source, training / f"ADE_train_{i:08d}.png")
    os.link(source, validation / "ADE_val_00000001.png")
    return root / "ADEChallengeData2016" / "annotations_detectron2" / "training"

def two_busy_workers(process, output, log) -> list:
    """The pids of ``process``'s two pool workers, once they have written a few files to ``output`` (its ``log`` is
    shown if it dies or never gets there)."""
    workers = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        workers = children(process.pid)
        if len(workers) == 2 and output.is_dir() and len(os.listdir(output)) >= 4:
            break
        time.sleep(0.1)
    assert process.poll() is None and len(workers) == 2, log.read_text()[-2000:]
    return workers


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads process parents from Linux /proc")
def test_kill_9_of_a_prepare_run_takes_its_workers_with_it(tmp_path):
    output = raw_ade20k(tmp_path, 2000)
    log = tmp_path / "log.txt"
    script = os.path.join(REPO, "datasets", "prepare_ade20k_sem_seg.py")
    command = [script, "--root", str(tmp_path), "--workers", "2"]
    process = start_script(command, stdout=str(log), stderr=str(log), cwd=REPO)
    workers = []
    try:
        workers = two_busy_workers(process, output, log)
        process.kill()
        process.wait(timeout=30)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(alive(pid) for pid in workers):
            time.sleep(0.05)
        assert not any(alive(pid) for pid in workers), "workers outlived their killed parent"
        written = len(os.listdir(output))
        time.sleep(1.0)
        assert len(os.listdir(output)) == written < 2000  # nothing writes any more
    finally:
        for pid in [process.pid, *workers]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


_MARK = []


def _mark(value):
    _MARK.append(value)


def _parent_and_mark(_):
    return os.getppid(), tuple(_MARK)


def test_the_pool_still_runs_its_initializer_and_tasks():
    from freemask.utils.worker_pool import process_pool

    with process_pool(2, initializer=_mark, initargs=("initialised",)) as pool:
        assert set(pool.map(_parent_and_mark, range(8))) == {(os.getpid(), ("initialised",))}


SLEEPER = """
import os, sys, time


def sleep_forever(folder):
    open(os.path.join(folder, f"{os.getpid()}.pid"), "w").close()
    while True:
        time.sleep(0.1)


if __name__ == "__main__":
    sleep_forever(sys.argv[1])
"""

STARTERS = {
    # train_net.py / filter_syn.py / generate_syn.py --num-gpus 2: one worker per rank, forked from a server
    "launch": """
import sys
from freemask import cli
from freemask.engine import launch
from sleeper import sleep_forever

if __name__ == "__main__":
    sys.exit(cli.run(lambda: launch(cli.in_worker, 2, args=(sleep_forever, sys.argv[1]))))
""",
    # tools/run_freemask_pipeline.py: every step a command forked from a server
    "run_script": """
import os, sys
from freemask.utils.forked_script import run_script

if __name__ == "__main__":
    sleeper = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sleeper.py")
    run_script([sleeper, sys.argv[1]], stdout=os.devnull, stderr=os.devnull)
""",
}


def start_sleepers(tmp_path, starter, count, **kwargs):
    """Start ``starter`` (a script starting ``count`` sleeping processes); returns it and the sleepers' pids."""
    (tmp_path / "sleeper.py").write_text(SLEEPER)
    (tmp_path / "starter.py").write_text(STARTERS[starter])
    pids = tmp_path / "pids"
    pids.mkdir()
    log = tmp_path / "log.txt"
    process = start_script([tmp_path / "starter.py", pids], stdout=str(log), stderr=str(log), cwd=tmp_path, **kwargs)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None and len(os.listdir(pids)) < count:
        time.sleep(0.1)
    assert process.poll() is None and len(os.listdir(pids)) == count, log.read_text()[-2000:]
    return process, [int(name.split(".")[0]) for name in os.listdir(pids)], log


@pytest.mark.parametrize("starter, count", [("launch", 2), ("run_script", 1)])
def test_kill_9_of_a_command_takes_its_rank_workers_and_forked_steps_with_it(tmp_path, starter, count):
    process, sleepers = None, []
    try:
        process, sleepers, _ = start_sleepers(tmp_path, starter, count)
        process.kill()
        process.wait(timeout=30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(alive(pid) for pid in sleepers):
            time.sleep(0.05)
        assert not any(alive(pid) for pid in sleepers), f"{starter}'s processes outlived their killed parent"
    finally:
        for pid in [process.pid if process else 0, *sleepers]:
            if pid and alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_ctrl_c_of_a_multi_process_command_is_one_line(tmp_path):
    """Every rank gets the terminal's SIGINT; none prints a traceback, the launching process prints one line."""
    process, sleepers = None, []
    try:
        process, sleepers, log = start_sleepers(tmp_path, "launch", 2, start_new_session=True)
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in its terminal does
        assert process.wait(timeout=60) == 130
        lines = [line for line in log.read_text().splitlines() if "Terminating process" not in line]  # torch's log
        assert lines == [
            "interrupted (Ctrl-C); every output file already written is complete (files are written atomically): "
            "run the same command again to continue"
        ]
    finally:
        for pid in [process.pid if process else 0, *sleepers]:
            if pid and alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_ctrl_c_of_a_prepare_run_is_one_line_and_stops_the_workers_at_once(tmp_path):
    output = raw_ade20k(tmp_path, 2000)
    log, errors = tmp_path / "log.txt", tmp_path / "stderr.txt"
    script = os.path.join(REPO, "datasets", "prepare_ade20k_sem_seg.py")
    command = [script, "--root", str(tmp_path), "--workers", "2"]
    process = start_script(command, stdout=str(log), stderr=str(errors), cwd=REPO, start_new_session=True)
    workers = []
    try:
        workers = two_busy_workers(process, output, errors)
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in its terminal does: every process of the group
        start = time.monotonic()
        assert process.wait(timeout=60) == 130
        assert time.monotonic() - start < 10  # not after the workers' queued files
        lines = [line for line in errors.read_text().splitlines() if line and not line.startswith("ADE20K training")]
        assert lines == [
            "interrupted (Ctrl-C); every output file already written is complete (files are written atomically): "
            "run the same command again to continue"
        ]
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(alive(pid) for pid in workers):
            time.sleep(0.05)
        assert not any(alive(pid) for pid in workers)
    finally:
        for pid in [process.pid, *workers]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
