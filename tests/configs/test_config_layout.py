"""The shipped configs follow one layout, ``configs/<dataset>/<task>/[<model family>/]<file>.yaml`` (issue 27), so a
reader finds a recipe from its dataset and task; configs/README.md maps every old path to where the recipe went."""

import re

import yaml

TASKS = {"semantic-segmentation", "panoptic-segmentation", "instance-segmentation", "open-vocabulary"}
SHARED = "common"  # model recipes and backbones shared by every dataset


def _shipped(repo_root):
    return sorted(p.relative_to(repo_root / "configs") for p in (repo_root / "configs").rglob("*.yaml"))


def _bases(path):
    """The files ``path`` names in its ``_BASE_``, resolved against its folder."""
    bases = (yaml.safe_load(path.read_text()) or {}).get("_BASE_") or []
    return [(path.parent / base).resolve() for base in ([bases] if isinstance(bases, str) else bases)]


def test_every_config_sits_in_a_dataset_and_task_folder(repo_root):
    """A config outside configs/common/ is under a task folder of its dataset, or is a fragment directly in the dataset
    folder that the dataset's task folders share (named in some config's _BASE_, never trained on its own)."""
    shipped = _shipped(repo_root)
    named_as_base = {base for rel in shipped for base in _bases(repo_root / "configs" / rel)}
    misplaced = []
    for rel in shipped:
        parts = rel.parts
        if parts[0] == SHARED:
            continue
        in_task_folder = len(parts) >= 3 and parts[1] in TASKS
        shared_fragment = len(parts) == 2 and (repo_root / "configs" / rel).resolve() in named_as_base
        if not (in_task_folder or shared_fragment):
            misplaced.append(str(rel))
    assert not misplaced, f"not under configs/<dataset>/<task>/: {misplaced}"
    assert len(shipped) >= 170


def test_every_base_stays_inside_configs(repo_root):
    """_BASE_ paths are relative to the file; after a move each still lands on a shipped config, not outside."""
    configs = (repo_root / "configs").resolve()
    for rel in _shipped(repo_root):
        for base in _bases(repo_root / "configs" / rel):
            assert base.is_file() and configs in base.parents, f"configs/{rel}: _BASE_ {base}"


def test_readme_table_maps_every_old_path_to_a_shipped_one(repo_root):
    """Each row of the configs README's "Where each recipe went" table names an old path that is gone and a new one
    that exists; every toy config is listed by name."""
    text = (repo_root / "configs" / "README.md").read_text()
    table = text.split("## Where each recipe went", 1)[1]
    rows = re.findall(r"^\| `(configs/[^`]+)`[^|]*\| (unchanged|`configs/[^`]+`) \|$", table, flags=re.M)
    assert len(rows) >= 30
    for old, new in rows:
        if new == "unchanged":
            assert (repo_root / old).exists(), old
            continue
        new = new.strip("`")
        assert (repo_root / new).exists(), f"{old} -> {new}: no such path"
        assert not (repo_root / old).exists(), f"{old} still exists beside {new}"
        if old.endswith(".yaml"):
            assert old.rsplit("/", 1)[1] == new.rsplit("/", 1)[1], f"file names do not change: {old} -> {new}"
    listed = {new.strip("`") for _, new in rows}
    toy = {f"configs/{rel}" for rel in map(str, _shipped(repo_root)) if rel.startswith("toy/")}
    assert toy <= listed, f"toy configs missing from the table: {sorted(toy - listed)}"
