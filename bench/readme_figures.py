#!/usr/bin/env python
"""Does the README's main-job quote still hold? Run the main job once and compare.

    python bench/readme_figures.py                 # runs the README's main-job line (~2.5 min on 2 idle cores)
    python bench/readme_figures.py --check-only    # only: README quote == latest idle row of bench/RESULTS.md

The README quotes the main job's final mIoU and wall time from the table "Main-job runs" in bench/RESULTS.md (its
latest "idle" row); tests/test_readme.py checks that the two agree. This script re-measures: it runs the README's
main-job command (toy data generated into a temporary DETECTRON2_DATASETS, outputs into a temporary OUTPUT_DIR, so
./datasets and ./output are left alone), reads the mIoU it prints at the end, and prints whether the README's quote
still holds plus a row to add to RESULTS.md. Exit 1 when the mIoU differs (SEED 42 fixes it: a change means the code
changed the result); the time is reported, not judged, as it depends on the machine's load. Run it as a user runs
the line, without OMP_NUM_THREADS: the thread count changes float sums in the 7th digit from the first iteration,
which moves the final mIoU by a few hundredths.
"""

import argparse
import datetime
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, "README.md")
RESULTS = os.path.join(REPO, "bench", "RESULTS.md")
# The README's sentence after its three commands; the numbers are the quote.
README_QUOTE = re.compile(
    r"The main job takes about (?P<seconds>\d+) s on 2 idle CPU cores and reaches (?P<miou>\d+\.\d+) mIoU"
)
TABLE_TITLE = "Main-job runs"
# The console line train_net.py prints after each evaluation (trainer.py: "Evaluation on <name>: mIoU=...").
EVAL_LINE = re.compile(r"Evaluation on \S+: mIoU=(?P<miou>[\d.]+)")


@dataclass(frozen=True)
class Quote:
    miou: str
    seconds: int


@dataclass(frozen=True)
class Row:
    date: str
    load: str
    seconds: int
    miou_mid: str
    miou: str


def readme_quote(text: str) -> Quote:
    match = README_QUOTE.search(" ".join(text.split()))
    if not match:
        raise SystemExit(f"error: {README}: no sentence matching {README_QUOTE.pattern!r}; restore the main-job quote")
    return Quote(match["miou"], int(match["seconds"]))


def main_job_rows(text: str) -> List[Row]:
    """Rows of RESULTS.md's main-job table: | date | machine load | wall (s) | mIoU at 150 | mIoU at 300 | note |."""
    section = text.split(f"### {TABLE_TITLE}", 1)
    if len(section) != 2:
        raise SystemExit(f"error: {RESULTS}: no '### {TABLE_TITLE}' table; restore it")
    rows = []
    lines = section[1].strip().splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("|")), len(lines))
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", cells[0]):
            rows.append(Row(cells[0], cells[1], int(cells[2]), cells[3], cells[4]))
    if not rows:
        raise SystemExit(f"error: {RESULTS}: the '{TABLE_TITLE}' table has no rows")
    return rows


def expected_quote(rows: List[Row]) -> Quote:
    """What the README must say: the latest "idle" row (the line as pasted, default threads, nothing else running),
    whose mIoU is the user's and whose time is the machine's."""
    idle = [r for r in rows if r.load == "idle"]
    if not idle:
        raise SystemExit(f"error: {RESULTS}: no 'idle' row in the '{TABLE_TITLE}' table; measure on an idle machine")
    return Quote(idle[-1].miou, idle[-1].seconds)


def main_job_command(readme_text: str) -> str:
    """The README's main-job line (second command of its first bash block)."""
    block = readme_text.split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line for line in block.splitlines() if line and not line.startswith("#")]
    return commands[1]


def run_main_job(command: str, workdir: str) -> tuple[float, List[str]]:
    """Wall seconds and the mIoU values the command printed, run from the repository with temporary data/output."""
    env = {**os.environ, "DETECTRON2_DATASETS": os.path.join(workdir, "datasets")}
    # The user's line writes ./output/...; the same run into a temporary OUTPUT_DIR leaves the user's outputs alone.
    command += " OUTPUT_DIR " + shlex.quote(os.path.join(workdir, "output"))
    start = time.perf_counter()
    proc = subprocess.run(command, shell=True, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"error: the main job failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
    return seconds, EVAL_LINE.findall(proc.stdout + proc.stderr)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check-only", action="store_true", help="compare README and RESULTS.md, run nothing")
    args = parser.parse_args(argv)
    with open(README, encoding="utf-8") as f:
        readme = f.read()
    with open(RESULTS, encoding="utf-8") as f:
        rows = main_job_rows(f.read())
    quote, expected = readme_quote(readme), expected_quote(rows)
    print(
        f"README quotes {quote.miou} mIoU in about {quote.seconds} s; bench/RESULTS.md: {expected.miou} mIoU, "
        f"{expected.seconds} s"
    )
    if quote != expected:
        print("README and bench/RESULTS.md disagree: quote the latest main-job row")
        return 1
    if args.check_only:
        return 0
    with tempfile.TemporaryDirectory(prefix="freemask_main_job_") as workdir:
        seconds, mious = run_main_job(main_job_command(readme), workdir)
    if not mious:
        print("the main job printed no evaluation line")
        return 1
    final = f"{float(mious[-1]):.2f}"
    load = os.getloadavg()[0]
    if os.environ.get("OMP_NUM_THREADS"):
        print(f"note: OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} is set; the README's figure is for the default")
    holds = final == quote.miou
    print(f"this run: {final} mIoU (evaluations: {', '.join(mious)}) in {seconds:.0f} s, load average {load:.1f}")
    verdict = "holds" if holds else "does NOT hold"
    print(f"README quote {verdict} for the mIoU; the time is {seconds / quote.seconds:.2f}x the quote")
    middle = f"{float(mious[0]):.2f}" if len(mious) > 1 else "-"
    today = datetime.date.today()
    print(f"row for bench/RESULTS.md: | {today} | load {load:.1f} | {seconds:.0f} | {middle} | {final} | |")
    return 0 if holds else 1


if __name__ == "__main__":
    sys.exit(main())
