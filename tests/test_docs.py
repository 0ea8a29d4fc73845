"""The README and docs/ name only repository paths that exist, and their relative links resolve.

A file that moves (a config, a module, a tool) must take its mentions in the guides with it: this test lists every
path a guide cites that is not in the repository and every link (and #anchor) that leads nowhere.
"""

import re
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

# Top-level folders whose paths the guides cite; a token under one of them is checked (datasets/ only for its
# scripts and README: `datasets/toy/...` is the default $DETECTRON2_DATASETS, not a repository folder).
CHECKED_ROOTS = ("configs/", "freemask/", "tools/", "bench/", "tests/", "ops/", "docs/", "datasets/")
PATH_TOKEN = re.compile(r"(?<![\w./{}$-])((?:%s)[\w./{},*<>\[\]-]*)" % "|".join(re.escape(r) for r in CHECKED_ROOTS))
# Official repositories the guides cite as "owner/name, path" or "owner/name `path`": their paths are not ours.
OFFICIAL_CITATION = re.compile(r"[\w.-]+/[\w.-]+(?:,|:)?\s*`?$")
MARKDOWN_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")


def documents(repo_root: Path) -> List[Path]:
    return [repo_root / "README.md", *sorted((repo_root / "docs").glob("*.md"))]


def expand_braces(token: str) -> List[str]:
    """``a/{b,c}/d`` -> ``a/b/d``, ``a/c/d`` (nested and repeated groups too)."""
    match = re.search(r"\{([^{}]*)\}", token)
    if not match:
        return [token]
    head, tail = token[: match.start()], token[match.end() :]
    return [out for option in match.group(1).split(",") for out in expand_braces(head + option + tail)]


def cited_paths(text: str) -> Iterator[str]:
    """Repository paths a page names: tokens under CHECKED_ROOTS, braces expanded, placeholders and globs left out,
    paths of official repositories (preceded by their ``owner/name``) left out."""
    for line in text.splitlines():
        for match in PATH_TOKEN.finditer(line):
            before = line[: match.start()]
            if OFFICIAL_CITATION.search(before) and not before.rstrip().endswith(("python", "$")):
                continue
            token = match.group(1).rstrip(".,:;")
            for path in expand_braces(token):
                if re.search(r"[*<>\[\]{}]", path):
                    continue  # a pattern or a placeholder, not a path
                if path.startswith("datasets/") and not path.endswith((".py", "README.md")):
                    continue
                yield path


def missing_paths(repo_root: Path) -> Dict[str, Set[str]]:
    missing: Dict[str, Set[str]] = {}
    for page in documents(repo_root):
        for path in cited_paths(page.read_text()):
            if not (repo_root / path).exists():
                missing.setdefault(str(page.relative_to(repo_root)), set()).add(path)
    return missing


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> Set[str]:
    """Every anchor of a Markdown page (repeated headings get GitHub's -1, -2 suffixes); headings inside code blocks
    are not headings."""
    seen: Dict[str, int] = {}
    out: Set[str] = set()
    in_code = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
            continue
        match = None if in_code else HEADING.match(line)
        if match:
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            out.add(base if count == 0 else f"{base}-{count}")
    return out


def broken_links(repo_root: Path) -> List[Tuple[str, str]]:
    broken = []
    for page in documents(repo_root):
        for target in MARKDOWN_LINK.findall(page.read_text()):
            if re.match(r"[a-z]+://|mailto:", target):
                continue
            file_part, _, anchor = target.partition("#")
            linked = (page.parent / file_part).resolve() if file_part else page
            if not linked.exists():
                broken.append((str(page.relative_to(repo_root)), target))
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                broken.append((str(page.relative_to(repo_root)), target))
    return broken


def test_every_repository_path_the_docs_cite_exists(repo_root):
    assert missing_paths(repo_root) == {}


def test_every_relative_link_of_the_docs_resolves(repo_root):
    assert broken_links(repo_root) == []


def test_the_checks_find_a_missing_path_and_a_broken_link(tmp_path):
    """The two checks above would fail on a page that names a missing file or links to a missing anchor."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "real.py").write_text("")
    (tmp_path / "docs" / "GUIDE.md").write_text("# Guide\n\n## A section\n")
    (tmp_path / "README.md").write_text(
        "Run `python tools/real.py` and `tools/gone.py`; see facebookresearch/detectron2, `tools/train_net.py`.\n"
        "Files `configs/{a,b}/x.yaml` and `configs/<dataset>/*.yaml`.\n"
        "[ok](docs/GUIDE.md#a-section) [no file](docs/NONE.md) [no anchor](docs/GUIDE.md#elsewhere)\n"
    )
    missing = {"tools/gone.py", "configs/a/x.yaml", "configs/b/x.yaml", "docs/NONE.md"}
    assert missing_paths(tmp_path) == {"README.md": missing}
    assert broken_links(tmp_path) == [("README.md", "docs/NONE.md"), ("README.md", "docs/GUIDE.md#elsewhere")]


def test_slug_follows_github_anchors():
    assert slug("Compiled deformable attention (optional)") == "compiled-deformable-attention-optional"
    assert slug("FreeSeg: open-vocabulary splits (seen / unseen)") == "freeseg-open-vocabulary-splits-seen--unseen"
    assert slug("At FreeMask's scale") == "at-freemasks-scale"
    copies_from = "generate-only-what-training-uses---copies-from"
    assert slug("Generate only what training uses (`--copies-from`)") == copies_from
