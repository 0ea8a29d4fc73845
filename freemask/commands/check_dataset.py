"""Check that every file of one or more registered datasets is what training expects; exit 1 on any problem.
Installed: `freemask check-dataset ARGS`; in a checkout also `python tools/check_dataset.py ARGS`, as below.

    python tools/check_dataset.py ade20k_sem_seg_train ade20k_sem_seg_val --workers 16
    python tools/check_dataset.py coco_2017_syn_stuff_sem_seg_train --json report.json
    python tools/check_dataset.py --config-file my.yaml DATASETS.CUSTOM.ROOT /data/mine   # DATASETS.CUSTOM splits
    python tools/check_dataset.py DATASETS.CUSTOM.NAME mine DATASETS.CUSTOM.ROOT /data/mine \
        DATASETS.CUSTOM.CLASSES_FILE /data/mine/classes.txt

Every registered split kind is checked by what its records hold, as training reads them: each image must decode
completely; a semantic mask (semantic, synthetic, open-vocabulary and classification splits, panoptic splits that
have one) must exist, be single-channel and of its image's size, and hold only class labels 0..C-1 or the ignore label
(after the zero-label reduction when the dataset uses it); a panoptic PNG must be RGB, of its image's size, and hold
exactly the segment ids its segments_info lists; an instance annotation must be a non-empty, well-formed polygon or
RLE of its image's size; every segment / annotation class must be one of the metadata's classes (an instance split's
thing_classes). Prints counts, the problems by kind (the first --max-problems of each; all of them in --json) and the
class pixel histogram.
Trailing KEY VALUE pairs override the defaults or --config-file; with a config and no dataset names, its
DATASETS.CUSTOM splits (or else DATASETS.TRAIN + TRAIN_SYN + TEST) are checked.
"""

import argparse
import os
import re
import sys
from typing import List, Optional, Sequence, Tuple

from freemask import cli
from freemask.data.catalog import DatasetCatalog
from freemask.data.check import check_dataset
from freemask.data.datasets import register_custom_from_config  # importing registers the builtin dataset names
from freemask.data.errors import DatasetError
from freemask.errors import UserError, one_line
from freemask.utils.atomic import atomic_write_json

# The first positional argument that looks like a config key (DATASETS.CUSTOM.ROOT) starts the KEY VALUE overrides.
_CONFIG_KEY = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+$")


def split_names_and_opts(items: List[str]) -> Tuple[List[str], List[str]]:
    """(dataset names, KEY VALUE overrides): argparse cannot split two free-length positional lists itself."""
    for i, item in enumerate(items):
        if _CONFIG_KEY.match(item):
            return items[:i], items[i:]
    return items, []


def names_from_config(config_file: str, opts: List[str]) -> List[str]:
    """Register DATASETS.CUSTOM (if set) and return the names that config would use."""
    from freemask.engine.defaults import setup_cfg  # torch: not needed for --help

    cfg = setup_cfg(config_file, opts)
    return register_custom_from_config(cfg) or list(cfg.DATASETS.TRAIN + cfg.DATASETS.TRAIN_SYN + cfg.DATASETS.TEST)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``freemask check-dataset`` / ``tools/check_dataset.py``: :func:`check` through the command-line runner."""
    return cli.run(check, argv)


def check(argv: Optional[Sequence[str]] = None) -> int:
    """Check the named (or the config's) datasets; 0 when every file is fine, 1 otherwise."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("items", nargs="*", metavar="NAME", help="registered dataset names (then KEY VALUE overrides)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)")
    parser.add_argument("--max-problems", type=int, default=10, metavar="K", help="problems printed per kind")
    parser.add_argument("--json", default="", metavar="FILE", help="write the full report (every problem) here")
    parser.add_argument("--config-file", default="", metavar="FILE", help="config whose datasets to register/check")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs, CI)")
    args = parser.parse_intermixed_args(argv)
    names, opts = split_names_and_opts(args.items)
    try:
        if args.config_file or opts:
            config_names = names_from_config(args.config_file, opts)  # registers DATASETS.CUSTOM even when named
            names = names or config_names
        if not names:
            parser.error("name at least one dataset; registered: " + ", ".join(sorted(DatasetCatalog.list())))
        unknown = [n for n in names if n not in DatasetCatalog]
        if unknown:
            raise DatasetError(
                f"not registered: {', '.join(unknown)}; registered: {', '.join(sorted(DatasetCatalog.list()))}"
            )
        reports = [check_dataset(n, args.workers, progress=not args.no_progress) for n in names]
    except (UserError, FileNotFoundError) as e:  # ConfigError, DatasetError, a missing file ...: one line
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 1
    for report in reports:
        print(report.format(args.max_problems))
    ok = all(r.ok for r in reports)
    if args.json:
        summary = {"ok": ok, "datasets": {r.name: r.to_dict() for r in reports}}
        atomic_write_json(args.json, summary, indent=1, final_newline=False)
    print("all datasets ok" if ok else "problems found (see above)")
    return 0 if ok else 1
