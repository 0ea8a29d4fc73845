"""Fixtures shared by the tests of freemask.synthetic."""

import shutil

import pytest


@pytest.fixture
def toy(toy_datasets, tmp_path, monkeypatch):
    """A private copy of the session toy dataset (manifests are written into it), as $DETECTRON2_DATASETS."""
    root = tmp_path / "datasets"
    shutil.copytree(toy_datasets, root)
    monkeypatch.setenv("DETECTRON2_DATASETS", str(root))
    return root / "toy"
