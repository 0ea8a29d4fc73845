import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture
def repo_root() -> pathlib.Path:
    return REPO


@pytest.fixture(scope="session")
def toy_datasets(tmp_path_factory) -> str:
    """A small toy dataset (the README's generator, shrunk) made once for every test that trains or evaluates."""
    root = tmp_path_factory.mktemp("datasets")
    subprocess.run(
        [
            sys.executable,
            str(REPO / "tools" / "make_toy_dataset.py"),
            "--root",
            str(root),
            "--num-train",
            "8",
            "--num-val",
            "4",
            "--seeds",
            "2",
            "--size",
            "64x64",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return str(root)
