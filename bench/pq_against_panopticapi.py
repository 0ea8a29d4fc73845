"""Our panoptic quality against panopticapi's own ``pq_compute_single_core`` on random scenes.

panopticapi is not a dependency (it is installed from git, and its PyPI repackaging ``panopticapi-lite`` pins
numpy < 2); its evaluation module needs only numpy and Pillow, so ``pip install --no-deps panopticapi-lite`` is enough
to run this check. Scenes carry void, crowd segments (at most one per category, as COCO), relabelled and random
predictions, so every kind of count occurs. Prints one row per category (TP/FP/FN equal, largest IoU-sum difference)
and the PQ/SQ/RQ difference per group; exits 1 on any disagreement.

    python bench/pq_against_panopticapi.py --scenes 1000
"""

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from tabulate import tabulate

from freemask.data.panoptic_png import id2rgb
from freemask.evaluation.panoptic_quality import PQStat, pq_metrics, pq_stat_single_image

CATEGORIES = [
    {"id": 1, "name": "car", "isthing": 1},
    {"id": 2, "name": "person", "isthing": 1},
    {"id": 3, "name": "sky", "isthing": 0},
    {"id": 4, "name": "road", "isthing": 0},
]


def random_scene(rng: np.random.Generator):
    """(gt ids, gt segments, pred ids, pred segments) of one 12x9 scene; gt ids 1000..5000, 0 = void."""
    gt = rng.integers(0, 6, size=(12, 9)) * 1000
    gt[:, :4] = gt[:1, :4]  # larger segments so that some match
    pred = np.where(rng.random(gt.shape) < 0.8, gt // 1000, rng.integers(0, 6, size=gt.shape))
    crowd_cats, gt_segs = set(), []
    for sid in np.unique(gt)[np.unique(gt) > 0].tolist():
        cat = int(rng.integers(1, 5))
        crowd = int(cat not in crowd_cats and rng.random() < 0.25)
        crowd_cats |= {cat} if crowd else set()
        gt_segs.append({"id": sid, "category_id": cat, "iscrowd": crowd, "area": int((gt == sid).sum())})
    by_id = {s["id"] // 1000: s["category_id"] for s in gt_segs}
    pred_segs = [
        {"id": p, "category_id": by_id.get(p, 1) if rng.random() < 0.8 else int(rng.integers(1, 5))}
        for p in np.unique(pred)[np.unique(pred) > 0].tolist()
    ]
    return gt, gt_segs, pred, pred_segs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    try:
        from panopticapi import evaluation
        from PIL import Image
    except ImportError:
        sys.exit("error: panopticapi is not installed; run: pip install --no-deps panopticapi-lite")
    rng = np.random.default_rng(args.seed)
    ours, pairs = PQStat(), []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "gt").mkdir()
        (root / "pred").mkdir()
        for i in range(args.scenes):
            gt, gt_segs, pred, pred_segs = random_scene(rng)
            Image.fromarray(id2rgb(gt)).save(root / "gt" / f"{i}.png")
            Image.fromarray(id2rgb(pred)).save(root / "pred" / f"{i}.png")
            pairs.append(
                (
                    {"image_id": i, "file_name": f"{i}.png", "segments_info": gt_segs},
                    {"image_id": i, "file_name": f"{i}.png", "segments_info": pred_segs},
                )
            )
            ours += pq_stat_single_image(gt, gt_segs, pred, pred_segs)
        categories = {c["id"]: c for c in CATEGORIES}
        reference = evaluation.pq_compute_single_core(0, pairs, str(root / "gt"), str(root / "pred"), categories)
    rows, agree = [], True
    for cat in categories:
        ref, mine = reference.pq_per_cat[cat], ours[cat]
        same = (ref.tp, ref.fp, ref.fn) == (mine.tp, mine.fp, mine.fn)
        diff = abs(ref.iou - mine.iou_sum)
        agree &= same and diff < 1e-6
        rows.append([categories[cat]["name"], f"{mine.tp}/{mine.fp}/{mine.fn}", "yes" if same else "NO", f"{diff:.1e}"])
    print(tabulate(rows, headers=["category", "ours TP/FP/FN", "= panopticapi", "|IoU sum diff|"]))
    result = pq_metrics(ours, CATEGORIES)
    rows = []
    for suffix, isthing in (("", None), ("_th", True), ("_st", False)):
        expected, _ = reference.pq_average(categories, isthing)
        diffs = [abs(result[k.upper() + suffix] - 100 * expected[k]) for k in ("pq", "sq", "rq")]
        agree &= max(diffs) < 1e-6
        rows.append([suffix or "all", f"{result['PQ' + suffix]:.4f}", *(f"{d:.1e}" for d in diffs)])
    print(tabulate(rows, headers=["group", "our PQ", "|PQ diff|", "|SQ diff|", "|RQ diff|"]))
    print(f"{args.scenes} scenes: {'identical counts, PQ/SQ/RQ within 1e-6' if agree else 'DISAGREEMENT'}")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
