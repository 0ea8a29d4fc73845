"""The project's one atomic-write helper: complete files or none, temporaries cleaned, stale ones recognised."""

import json
import os
import subprocess
import sys

import pytest

from freemask.utils.atomic import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    clear_stale_temporaries,
    is_temporary,
    remove_stale_temporaries,
    temporary_path,
)


def test_writes_replace_and_leave_no_temporary(tmp_path):
    target = tmp_path / "a.json"
    target.write_text("old")
    atomic_write_json(str(target), {"x": [1, 2]})
    assert json.loads(target.read_text()) == {"x": [1, 2]}
    atomic_write_text(str(tmp_path / "b.txt"), "é\n")
    assert (tmp_path / "b.txt").read_bytes() == "é\n".encode("utf-8")
    atomic_write_bytes(str(tmp_path / "c.bin"), b"\x00\x01")
    assert (tmp_path / "c.bin").read_bytes() == b"\x00\x01"
    assert sorted(os.listdir(tmp_path)) == ["a.json", "b.txt", "c.bin"]


def test_json_layout_is_the_callers(tmp_path):
    """The writers folded into the helper keep their bytes: one line without a final newline, or indented."""
    target = str(tmp_path / "a.json")
    atomic_write_json(target, {"b": 1, "a": [2]}, indent=None, final_newline=False)
    assert (tmp_path / "a.json").read_bytes() == b'{"b": 1, "a": [2]}'
    atomic_write_json(target, {"b": 1, "a": None}, indent=2, sort_keys=True, allow_nan=False)
    assert (tmp_path / "a.json").read_bytes() == b'{\n  "a": null,\n  "b": 1\n}\n'
    with pytest.raises(ValueError):
        atomic_write_json(target, {"x": float("nan")}, allow_nan=False)
    assert sorted(os.listdir(tmp_path)) == ["a.json"]


def test_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "model.pth"
    target.write_bytes(b"complete")
    with pytest.raises(RuntimeError):
        with atomic_path(str(target)) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"half")
            raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"complete"
    assert os.listdir(tmp_path) == ["model.pth"]


def test_temporary_names_are_hidden_and_recognised(tmp_path):
    tmp = temporary_path(str(tmp_path / "x.png"))
    name = os.path.basename(tmp)
    assert name.startswith(".x.png.") and is_temporary(name)
    assert not is_temporary("x.png") and not is_temporary(".hidden")


def test_stale_temporaries_of_dead_processes_only_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    (tmp_path / f".a.png.{dead_pid}.tmp").write_bytes(b"partial")
    live = tmp_path / f".b.png.{os.getpid()}.tmp"
    live.write_bytes(b"being written")
    (tmp_path / "c.png").write_bytes(b"kept")
    assert remove_stale_temporaries(str(tmp_path)) == 1
    assert sorted(os.listdir(tmp_path)) == [live.name, "c.png"]
    assert remove_stale_temporaries(str(tmp_path / "missing")) == 0
    for name in (f".z.pth.{dead_pid}.tmp", f".y.json.{dead_pid}.tmp"):
        (tmp_path / name).write_bytes(b"partial")
    assert clear_stale_temporaries(str(tmp_path)) == [f".y.json.{dead_pid}.tmp", f".z.pth.{dead_pid}.tmp"]
    assert sorted(os.listdir(tmp_path)) == [live.name, "c.png"]
