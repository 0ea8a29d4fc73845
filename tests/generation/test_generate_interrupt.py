"""Ctrl-C of tools/generate_syn.py: one line and exit 130, not a KeyboardInterrupt traceback; finished pairs kept."""

import os
import signal
import time

from freemask.utils.forked_script import start_script

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(REPO, "tools", "generate_syn.py")
TINY = ["--backend", "tiny", "--size", "64", "--steps", "2", "--no-progress", "--batch-size", "1"]


def test_ctrl_c_is_one_line_and_exit_code_130(toy_datasets, tmp_path):
    root = tmp_path / "out"
    log = tmp_path / "log.txt"
    args = ["--real-dataset", "toy_sem_seg_train", "--output", str(root), "--seeds", "2", *TINY]
    env = {**os.environ, "DETECTRON2_DATASETS": toy_datasets, "OMP_NUM_THREADS": "1"}
    # Its own process group: Ctrl-C in a terminal signals the whole group.
    process = start_script([TOOL, *args], stdout=os.devnull, stderr=str(log), env=env, cwd=REPO, start_new_session=True)
    masks = root / "annotations"
    try:
        deadline = time.monotonic() + 300
        while process.poll() is None and time.monotonic() < deadline:
            if masks.is_dir() and len(os.listdir(masks)) >= 2:
                break
            time.sleep(0.005)
        os.killpg(process.pid, signal.SIGINT)
        code = process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    written = [n for n in os.listdir(masks) if n.endswith(".png")]
    assert 0 < len(written) < 16, f"the Ctrl-C came too late ({len(written)} of 16 pairs written)"
    stderr = log.read_text()
    assert code == 130 and "Traceback" not in stderr, stderr[-3000:]
    assert stderr.splitlines() == [
        "interrupted (Ctrl-C); every output file already written is complete (files are written atomically): run "
        "the same command again to continue"
    ]
