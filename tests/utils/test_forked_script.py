"""freemask.utils.forked_script: a script forked from the warm server behaves as ``python script.py`` would."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from freemask.utils.forked_script import run_script, start_script

SCRIPT = """
import atexit, multiprocessing, os, sys, threading, time, warnings
import torch

print("argv", sys.argv)
print("file", __file__, __name__)
print("cwd", os.getcwd())
print("env", os.environ.get("ONLY_HERE"), "HOME" in os.environ)
print("path0", sys.path[0])
print("threads", torch.get_num_threads())
process = multiprocessing.current_process()
print("process", multiprocessing.get_start_method(), process.name, multiprocessing.parent_process())
warnings.warn("a warning on stderr")
atexit.register(lambda: print("atexit ran"))
threading.Thread(target=lambda: (time.sleep(0.2), print("thread finished"))).start()
what = sys.argv[1]
if what == "raise":
    raise RuntimeError("escaped")
if what == "message":
    sys.exit("error: one line")
if what == "sleep":
    time.sleep(60)
sys.exit(int(what))
"""


def both(tmp_path, *args, source=SCRIPT, **kwargs):
    """(exit code, stdout, stderr) of the forked script and of a new interpreter, for the same command."""
    script = tmp_path / "tool.py"
    script.write_text(source)
    runs = []
    for name in ("fork", "new"):
        out, err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
        if name == "fork":
            code = run_script([script, *args], stdout=str(out), stderr=str(err), **kwargs)
        else:
            with open(out, "w") as o, open(err, "w") as e:
                code = subprocess.run([sys.executable, script, *args], stdout=o, stderr=e, **kwargs).returncode
        runs.append((code, out.read_text(), err.read_text()))
    return runs


def test_argv_file_cwd_env_threads_exit_code_atexit_and_threads_are_the_interpreters(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    env = {**os.environ, "ONLY_HERE": "yes", "OMP_NUM_THREADS": "1"}
    fork, new = both(tmp_path, "3", env=env, cwd=str(tmp_path / "elsewhere"))
    assert fork[0] == new[0] == 3
    assert fork[1] == new[1]
    assert "env yes True" in fork[1] and "threads 1" in fork[1] and f"file {tmp_path}/tool.py __main__" in fork[1]
    assert "process fork MainProcess None" in fork[1]  # DataLoader workers start as in a new interpreter
    assert fork[1].endswith("thread finished\natexit ran\n")
    assert "UserWarning: a warning on stderr" in fork[2] and fork[2] == new[2]


@pytest.mark.parametrize("what, code", [("message", 1), ("raise", 1), ("0", 0)])
def test_exit_messages_and_tracebacks_are_the_interpreters(tmp_path, what, code):
    # Without torch: a new interpreter's start-up is then cheap (the thread count is checked above).
    source = SCRIPT.replace("import torch\n", "").replace('print("threads", torch.get_num_threads())\n', "")
    fork, new = both(tmp_path, what, source=source)
    assert fork[0] == new[0] == code
    assert fork[1] == new[1]
    if what == "message":
        assert fork[2].endswith("error: one line\n") and new[2].endswith("error: one line\n")
    if what == "raise":
        assert fork[2].splitlines()[-1] == new[2].splitlines()[-1] == "RuntimeError: escaped"
        assert "Traceback (most recent call last):" in fork[2]


def test_output_is_appended_and_one_path_merges_both_streams(tmp_path):
    script, log = tmp_path / "t.py", tmp_path / "step.log"
    script.write_text("import sys\nprint('out')\nprint('err', file=sys.stderr)\n")
    log.write_text("header\n")
    assert run_script([script], stdout=str(log), stderr=str(log)) == 0
    assert sorted(log.read_text().splitlines()) == ["err", "header", "out"]
    assert log.read_text().startswith("header\n")


def test_a_command_past_its_timeout_is_killed(tmp_path):
    script = tmp_path / "t.py"
    script.write_text("import time\nprint('started', flush=True)\ntime.sleep(60)\n")
    out = tmp_path / "out"
    with pytest.raises(subprocess.TimeoutExpired):
        run_script([script], stdout=str(out), stderr=str(out), timeout=1)


def test_spawned_workers_find_the_script_as_main(tmp_path):
    """train_net.py --num-gpus 2 spawns workers that re-run the script as __mp_main__ to find their function."""
    script = tmp_path / "t.py"
    script.write_text(
        textwrap.dedent(
            """
            import multiprocessing as mp

            def square(x):
                return x * x

            if __name__ == "__main__":
                with mp.get_context("spawn").Pool(2) as pool:
                    print(pool.map(square, [1, 2, 3]))
            """
        )
    )
    out = tmp_path / "out"
    assert run_script([script], stdout=str(out), stderr=str(out), timeout=120) == 0, out.read_text()
    assert out.read_text() == "[1, 4, 9]\n"


def test_a_started_command_leads_its_own_session_and_can_be_killed(tmp_path):
    script, out = tmp_path / "t.py", tmp_path / "out"
    script.write_text("import os, time\nprint(os.getpgid(0) == os.getpid(), flush=True)\ntime.sleep(60)\n")
    out.touch()
    process = start_script([script], stdout=str(out), stderr=str(out), start_new_session=True)
    deadline = time.monotonic() + 60
    while not out.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None and out.read_text() == "True\n"
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in its terminal does
    assert process.wait(timeout=60) == -signal.SIGINT and "KeyboardInterrupt" in out.read_text()  # as Python's
    process = start_script([script], stdout=str(out), stderr=str(out))
    with pytest.raises(subprocess.TimeoutExpired):
        process.wait(timeout=0.5)
    process.kill()
    assert process.wait(timeout=60) == -signal.SIGKILL


def test_ctrl_c_is_the_callers_now_not_the_callers_when_the_server_started(tmp_path):
    """A caller that ignored SIGINT when the server started (a pool worker's set-up in the same process, as in a test
    worker of the suite) and handles it again later starts commands that handle it, as new interpreters would; while
    it ignores SIGINT, they ignore it too (an ignored signal survives exec)."""
    script = tmp_path / "t.py"
    script.write_text("import signal\nprint(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)\n")
    caller = tmp_path / "caller.py"
    caller.write_text(
        textwrap.dedent(
            f"""
            import signal
            from freemask.utils.forked_script import run_script

            if __name__ == "__main__":
                for handler in (signal.SIG_IGN, signal.default_int_handler, signal.SIG_IGN):
                    signal.signal(signal.SIGINT, handler)
                    run_script([{str(script)!r}], stdout={str(tmp_path / "out")!r}, stderr={str(tmp_path / "out")!r})
            """
        )
    )
    subprocess.run([sys.executable, str(caller)], check=True, timeout=120)
    assert (tmp_path / "out").read_text().split() == ["True", "False", "True"]


def test_a_non_script_is_refused(tmp_path):
    with pytest.raises(ValueError, match="runs a Python script"):
        run_script(["-c", "pass"], stdout=str(tmp_path / "o"), stderr=str(tmp_path / "e"))
