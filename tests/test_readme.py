"""The README's three commands are the ones CI runs; every toy command of the README and of the guides in docs/ runs
as pasted; the README's figures are measured ones."""

import argparse
import importlib.util
import os
import re
import shlex
import sys
from unittest import mock

import pytest

import freemask.data.datasets  # noqa: F401  (registers the builtin dataset names)
from freemask.arguments import default_argument_parser
from freemask.data.catalog import DatasetCatalog
from freemask.engine.defaults import setup_cfg
from freemask.toy.generator import ToyParams


def readme_commands(repo_root):
    text = (repo_root / "README.md").read_text()
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_readme_starts_with_three_commands_and_ci_runs_setup_and_tests(repo_root):
    setup, main_job, tests = readme_commands(repo_root)
    ci = (repo_root / ".ci" / "run").read_text()
    assert setup.replace("python -m pip install", "python -m pip install -q") in ci
    assert tests in ci
    assert "train_net.py" in main_job and "make_toy_dataset.py" in main_job


# ------------------------------------------------------------------ toy commands run as pasted (issue 18, point 17)


# The README and the guides it links to, in reading order: a toy command may use what a command of an earlier page
# (or earlier on the same page) wrote, as a reader following them in this order would have it.
PAGES = (
    "README.md",
    "docs/GETTING_STARTED.md",
    "docs/DATASETS.md",
    "docs/FREEMASK_TOOLS.md",
    "docs/GENERATION.md",
    "docs/PANOPTIC.md",
    "docs/MODEL_ZOO.md",
    "docs/FREESEG.md",
)
# The commands run from the repository root with DETECTRON2_DATASETS unset (./datasets).
DATASETS = "datasets"
TOY_SYN_ROOT = f"{DATASETS}/toy/ADE20K_Synthetic"
PATH_SUFFIXES = (".yaml", ".json", ".pth", ".png", ".txt", ".py")
# Flags whose value is a place the command writes, so it need not exist before.
OUTPUT_FLAGS = {"--output", "--copy", "--symlink", "--json"}
# Scripts that only run on the toy data, whatever their arguments say.
TOY_SCRIPTS = {"tools/run_freemask_pipeline.py", "tools/make_toy_dataset.py"}


def bash_commands(text):
    """Every command of every ```bash block: continuation lines joined, comments dropped, ``&&`` chains split."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            tokens = shlex.split(line, comments=True)
            while tokens:
                cut = tokens.index("&&") if "&&" in tokens else len(tokens)
                commands.append(tokens[:cut])
                tokens = tokens[cut + 1 :]
    return [c for c in commands if c]


class _Parsed(Exception):
    pass


def parsed_args(repo_root, script, args):
    """The Namespace the tool's own argument parser makes of ``args`` (its main() stopped right after parsing)."""
    if script == "train_net.py":
        return default_argument_parser().parse_args(args)
    path = repo_root / script
    spec = importlib.util.spec_from_file_location(f"readme_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if script == "tools/filter_syn.py":  # parses in main, then checks
        module = importlib.import_module("freemask.commands.filter")
        parser = module.argument_parser()
        namespace = parser.parse_args(args)
        module.check_arguments(parser, namespace)
        return namespace
    captured = {}
    originals = {m: getattr(argparse.ArgumentParser, m) for m in ("parse_args", "parse_intermixed_args")}

    def stop_after(method):
        def parse(self, argv=None, namespace=None):
            captured["args"] = originals[method](self, argv, namespace)
            raise _Parsed

        return parse

    with mock.patch.multiple(argparse.ArgumentParser, **{m: stop_after(m) for m in originals}):
        with pytest.raises(_Parsed):
            module.main(args)
    return captured["args"]


def path_arguments(args):
    """Tokens naming files or folders to read (values of output flags left out)."""
    paths = []
    for i, token in enumerate(args):
        if token.startswith("-") or (i and args[i - 1] in OUTPUT_FLAGS):
            continue
        if "/" in token or token.endswith(PATH_SUFFIXES):
            paths.append(os.path.normpath(token))
    return paths


def produced_by(script, namespace, repo_root):
    """Files and folders a toy command creates (what a later command may name)."""
    if script == "tools/make_toy_dataset.py":
        return {f"{DATASETS}/toy"}
    if script == "train_net.py":
        cfg = setup_cfg(str(repo_root / namespace.config_file), namespace.opts)
        out = os.path.normpath(cfg.OUTPUT_DIR)
        return {out, f"{out}/model_final.pth", f"{out}/metrics.json"}
    if script == "tools/filter_syn.py":
        return {f"{TOY_SYN_ROOT}/class_loss.json", f"{TOY_SYN_ROOT}/annotations_filtered"}
    if script == "tools/resample_syn.py":
        return {f"{TOY_SYN_ROOT}/resampled_manifest.txt"}
    if script == "tools/generate_syn.py":
        return {os.path.normpath(namespace.output)}
    return set()


def toy_datasets_named(script, namespace, repo_root):
    names = [getattr(namespace, k, None) for k in ("real_dataset", "syn_dataset")]
    if getattr(namespace, "config_file", ""):
        cfg = setup_cfg(str(repo_root / namespace.config_file), getattr(namespace, "opts", []))
        names += list(cfg.DATASETS.TRAIN + cfg.DATASETS.TRAIN_SYN + cfg.DATASETS.TEST)
    names += [n for n in getattr(namespace, "items", []) or [] if n.startswith("toy")]
    return [n for n in names if n]


def documented_text(repo_root):
    """The README and the guides of PAGES, concatenated in reading order."""
    return "\n".join((repo_root / page).read_text() for page in PAGES)


def test_every_guide_of_the_readme_is_read_in_order(repo_root):
    """A guide the README links to is one of PAGES, so its toy commands are checked below (a new guide cannot be
    left out)."""
    linked = set(re.findall(r"\]\((docs/[A-Z_]+\.md)\)", (repo_root / "README.md").read_text()))
    assert linked and linked <= set(PAGES) | {"docs/ARCHITECTURE.md", "docs/EXTENDING.md"}


def test_every_toy_command_runs_as_pasted(repo_root, monkeypatch):
    """Each command of the README and its guides that mentions the toy data names an existing script, is accepted by
    that script's own argument parser (and its KEY VALUE overrides by the config), has no placeholder, and reads only
    files that exist in the repository or that an earlier command (in PAGES order) creates; a filtered / resampled
    split comes after the command writing it."""
    monkeypatch.delenv("DETECTRON2_DATASETS", raising=False)
    text = documented_text(repo_root).replace("${DETECTRON2_DATASETS:-datasets}", DATASETS)
    commands = [c for c in bash_commands(text) if c[0] == "python" and len(c) > 1]
    toy = [c for c in commands if c[1] in TOY_SCRIPTS or any("toy" in t for t in c)]
    produced, ran, checked = set(), [], 0
    for command in toy:
        script, args = command[1], command[2:]
        shown = " ".join(command)
        assert not any(re.search(r"[<>\[\]]", t) for t in args), f"placeholder in: {shown}"
        assert (repo_root / script).is_file(), f"no script {script}: {shown}"
        namespace = parsed_args(repo_root, script, args)
        if getattr(namespace, "opts", None) is not None and getattr(namespace, "config_file", ""):
            setup_cfg(str(repo_root / namespace.config_file), namespace.opts)  # keys and values valid
        for path in path_arguments(args):
            known = (repo_root / path).exists() or any(path == p or path.startswith(p + "/") for p in produced)
            assert known, f"{path} neither exists nor is written by an earlier README command: {shown}"
        for name in toy_datasets_named(script, namespace, repo_root):
            assert name in DatasetCatalog, f"dataset {name} is not registered: {shown}"
            for kind, writer in (("filtered", "tools/filter_syn.py"), ("resampled", "tools/resample_syn.py")):
                assert f"_{kind}_" not in name or writer in ran, f"{name} needs {writer} first: {shown}"
        if script == "tools/resample_syn.py":
            assert namespace.max_copies == ToyParams().num_seeds, f"--max-copies should match the toy seeds: {shown}"
        produced |= produced_by(script, namespace, repo_root)
        ran.append(script)
        checked += 1
    # the main job, filter, resample, joint training, plots, visualisation, demo, pipeline, SeMask smoke run
    expected = {"train_net.py", "tools/make_toy_dataset.py", "tools/filter_syn.py", "tools/resample_syn.py"}
    expected |= {"tools/plot_metrics.py", "tools/visualize_filtered.py", "tools/demo.py", "tools/check_dataset.py"}
    expected.add("tools/run_freemask_pipeline.py")
    assert expected <= set(ran) and checked >= 10
    joint = [c for c in toy if c[1] == "train_net.py" and any("joint" in t for t in c)]
    assert joint, "the guides name the toy joint config"


def _readme_figures(repo_root):
    spec = importlib.util.spec_from_file_location("readme_figures", repo_root / "bench" / "readme_figures.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("readme_figures", module)
    spec.loader.exec_module(module)
    return module


def test_readme_quotes_the_latest_main_job_figures_of_bench_results(repo_root, capsys):
    figures = _readme_figures(repo_root)
    quote = figures.readme_quote((repo_root / "README.md").read_text())
    rows = figures.main_job_rows((repo_root / "bench" / "RESULTS.md").read_text())
    idle = [r for r in rows if r.load == "idle"]
    assert idle and (quote.miou, quote.seconds) == (idle[-1].miou, idle[-1].seconds)
    assert figures.main(["--check-only"]) == 0


@pytest.mark.parametrize("final_delta, rc, verdict", [(0.0, 0, "holds"), (0.11, 1, "does NOT hold")])
def test_readme_figures_script_judges_a_run_by_its_final_miou(repo_root, monkeypatch, capsys, final_delta, rc, verdict):
    figures = _readme_figures(repo_root)
    quoted = float(figures.readme_quote((repo_root / "README.md").read_text()).miou)
    printed = ["91.68", f"{quoted + final_delta:.2f}"]
    commands = []
    monkeypatch.setattr(figures, "run_main_job", lambda command, workdir: commands.append(command) or (150.0, printed))
    assert figures.main([]) == rc
    out = capsys.readouterr().out
    assert f"README quote {verdict}" in out and f"| {printed[0]} | {printed[1]} |" in out
    assert commands == [readme_commands(repo_root)[1]]  # the README's main-job line, as pasted
