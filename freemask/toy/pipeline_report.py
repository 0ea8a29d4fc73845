"""The table of the toy FreeMask pipeline: mIoU / pACC of each training, and the filter against the planted defects.

Read only from the files the steps wrote (``<step>/inference/sem_seg_results.json``, ``<step>/config.yaml``,
``steps/<step>.json``, the synthetic root's masks and manifest), so the table of a resumed run is the table of the
runs that produced those files. Generated synthetic images (the pipeline's generate step) have no ``defects/``
folder: the filter's share of removed pixels comes from its ``filter_stats.json`` and the defect columns say so.
"""

import json
import math
import os
from typing import Dict, List, Optional

import yaml

from ..data.datasets.synthetic import FILTERED_MASKS_DIR, IMAGES_DIR, MANIFEST_NAME, MASKS_DIR, read_manifest
from ..utils.atomic import atomic_write_bytes
from .defect_score import BOUNDARY_RADIUS, DefectCounts, score_defect_folders
from .pipeline import FILTER_VARIANTS, RESULTS, FilterVariant, PipelineOptions, read_record


def variant_label(variant: FilterVariant) -> str:
    """``quantile clean-rate 0.02 boundary-band 2``: the variant's flags without the dashes."""
    return " ".join(variant.flags).replace("--rule ", "").replace("--", "")


TABLE_NAME = "freemask_pipeline.md"
# Step name -> (row label, synthetic data it trains on); real_seed<S> rows are added per noise seed.
ROWS = {
    "real": ("real only", "-"),
    "joint_raw": ("joint real + synthetic", "raw"),
    "joint_filtered": ("joint real + synthetic", "filtered"),
    **{
        f"joint_filtered_{v.name}": ("joint real + synthetic", f"filtered: {variant_label(v)}") for v in FILTER_VARIANTS
    },
    "joint_resampled": ("joint real + synthetic", "filtered & resampled"),
    "synpretrain": ("synthetic only (pre-training)", "filtered & resampled"),
    "finetune": ("pre-train on synthetic -> fine-tune on real", "filtered & resampled"),
}
TOY_IGNORE = 0  # toy masks are raw ADE20K-style: 0 = unlabelled, also for filtered pixels
DEFECTS_DIR = "defects"  # the toy generator's defect maps in the synthetic root
NO_DEFECTS = "no planted defects: generated images"


def _fmt(value: Optional[float], digits: int = 2, signed: bool = False) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _read_json(path: str) -> Optional[Dict]:
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _max_iter(step_dir: str) -> Optional[int]:
    path = os.path.join(step_dir, "config.yaml")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return int(yaml.safe_load(f)["SOLVER"]["MAX_ITER"])


def _synthetic_pairs(syn_root: str) -> Dict[str, Optional[int]]:
    """Pairs each synthetic split trains on: all images, and the manifest's pairs."""
    images = os.path.join(syn_root, IMAGES_DIR)
    count = sum(1 for n in os.listdir(images) if "_seed_" in n) if os.path.isdir(images) else None
    manifest = os.path.join(syn_root, MANIFEST_NAME)
    resampled = len(read_manifest(manifest, syn_root)) if os.path.isfile(manifest) else None
    return {"-": None, "raw": count, "filtered": count, "filtered & resampled": resampled}


def _training_rows(options: PipelineOptions) -> List[str]:
    rows = dict(ROWS)
    rows.update({f"real_seed{s}": (f"real only, SEED {s} (seed noise)", "-") for s in options.noise_seeds})
    pairs = _synthetic_pairs(options.synthetic_root)
    base = (_read_json(os.path.join(options.step_dir("real"), RESULTS)) or {}).get("mIoU")
    lines = [
        "| training | synthetic masks | synthetic pairs | iterations | mIoU | Δ mIoU vs real only | pACC | time (s) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, (label, synthetic) in rows.items():
        results = _read_json(os.path.join(options.step_dir(name), RESULTS)) or {}
        miou, pacc = results.get("mIoU"), results.get("pACC")
        delta = None if name == "real" or miou is None or base is None else miou - base
        record = read_record(options, name) or {}
        seconds = record.get("seconds") if record.get("finished") else None
        iters = _max_iter(options.step_dir(name))
        cells = [
            label,
            synthetic,
            pairs.get(synthetic, pairs["raw"]),
            iters,
            _fmt(miou),
            _fmt(delta, signed=True),
            _fmt(pacc),
        ]
        cells.append(_fmt(seconds, 0))
        lines.append("| " + " | ".join("-" if c is None else str(c) for c in cells) + " |")
    return lines


def has_planted_defects(options: PipelineOptions) -> bool:
    """Whether the synthetic images are the toy generator's, with its defect maps (generated ones have none)."""
    return os.path.isdir(os.path.join(options.synthetic_root, DEFECTS_DIR))


def defect_counts(options: PipelineOptions, filtered: str) -> DefectCounts:
    """The pixels a filter removed (its masks folder ``filtered``) against the planted defects."""
    syn = options.synthetic_root
    return score_defect_folders(os.path.join(syn, MASKS_DIR), filtered, os.path.join(syn, DEFECTS_DIR), TOY_IGNORE)


def _filtered_share(stats_dir: str) -> str:
    """The filter's own share of removed synthetic pixels (``filter_stats.json``), as a table cell."""
    overall = (_read_json(os.path.join(stats_dir, "filter_stats.json")) or {}).get("overall")
    return f"{_pct(overall['fraction'])}%" if overall else "n/a"


def _pct(value: float) -> str:
    return _fmt(100 * value, 1)


def _filters(options: PipelineOptions) -> List[tuple]:
    """(rule label, masks folder, filter_stats.json, joint training step) of the published filter and each variant."""
    syn = options.synthetic_root
    rows = [("mean-margin 1.25 (published)", os.path.join(syn, FILTERED_MASKS_DIR), syn, "joint_filtered")]
    for variant in FILTER_VARIANTS:
        masks = os.path.join(options.variant_root(variant), "annotations", "training")
        rows.append((variant_label(variant), masks, os.path.dirname(masks), f"joint_filtered_{variant.name}"))
    return rows


def _comparison_rows(options: PipelineOptions) -> List[str]:
    """One row per filter rule: what it removed from the synthetic set (against the planted defects), what it
    would remove from the real images (its own diagnostic), and the mIoU of joint training on its masks."""
    lines = [
        "| rule | filtered | precision | recall | clean pixels removed | clean removed within "
        f"{BOUNDARY_RADIUS} px of a boundary | diagnostic: real pixels removed | joint training mIoU (no re-sampling) "
        "|",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, masks, stats_dir, step in _filters(options):
        if not os.path.isdir(masks):
            lines.append(f"| {label} | (not run) | | | | | | |")
            continue
        diagnostic = (_read_json(os.path.join(stats_dir, "filter_stats.json")) or {}).get("diagnostic") or {}
        miou = (_read_json(os.path.join(options.step_dir(step), RESULTS)) or {}).get("mIoU")
        if has_planted_defects(options):
            cells = [label, *_defect_cells(defect_counts(options, masks))]
        else:
            cells = [label, _filtered_share(stats_dir), NO_DEFECTS, "", "", ""]
        cells += [f"{_pct(diagnostic['fraction'])}%" if diagnostic else "n/a", _fmt(miou)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _defect_cells(counts: DefectCounts) -> List[str]:
    """filtered, precision, recall, clean pixels removed, clean removed near a boundary."""
    clean = counts.labelled - counts.defects
    removed_clean = (counts.filtered - counts.hits) / clean if clean else math.nan
    return [
        f"{_pct(counts.filtered_fraction)}%",
        f"{_pct(counts.precision)}%",
        f"{_pct(counts.recall)}%",
        f"{_pct(removed_clean)}%",
        f"{_pct(counts.clean_filtered_boundary_share)}%",
    ]


def _defect_rows(counts: DefectCounts) -> List[str]:
    share, base = counts.filtered_fraction, counts.base_rate
    random_f1 = 2 * base * share / (base + share) if base + share > 0 else math.nan
    return [
        "| labelled synthetic pixels | filtered | planted defects (base rate) | precision | recall | F1 "
        "| random filter of the same share: precision / recall / F1 "
        f"| filtered clean pixels within {BOUNDARY_RADIUS} px of a boundary (all labelled pixels) |",
        "|---:|---:|---:|---:|---:|---:|---|---|",
        f"| {counts.labelled} | {_pct(share)}% | {_pct(base)}% | {_pct(counts.precision)}% | {_pct(counts.recall)}% "
        f"| {_pct(counts.f1)}% | {_pct(base)}% / {_pct(share)}% / {_pct(random_f1)}% "
        f"| {_pct(counts.clean_filtered_boundary_share)}% ({_pct(counts.boundary_share)}%) |",
    ]


def render_table(options: PipelineOptions, command: str) -> str:
    """The pipeline's table as Markdown."""
    meta = _read_json(os.path.join(options.datasets_root, "toy", "meta.json")) or {}
    data = (
        f"{meta.get('num_train')} real training and {meta.get('num_val')} validation images of "
        f"{meta.get('height')}x{meta.get('width')}, {meta.get('num_seeds')} synthetic copies per real mask"
    )
    if options.generation:
        data += (
            " painted by `freemask generate --backend tiny` (a random model: noise images, so this checks the chain, "
            "not the method)"
        )
    lines = [
        "# FreeMask pipeline on the toy dataset",
        "",
        f"`{command}`",
        "",
        f"Semantic FPN R-18 from scratch (configs/toy/semantic-segmentation/semantic_fpn_R18_toy*.yaml), {data};"
        f" schedules x{options.iters_scale:g}. mIoU and pACC (%) on toy_sem_seg_val, single scale, at the end of each"
        " training.",
        "",
        *_training_rows(options),
        "",
        "Filter rules side by side (`freemask filter` with the real-only model; precision, recall and clean pixels "
        "against the defects planted in the synthetic images; the diagnostic is the filter's own line, measured on the "
        "real training images):",
        "",
        *_comparison_rows(options),
        "",
        "The published filter (`freemask filter` with the real-only model) against the defects planted in the "
        "synthetic images, on the pixels labelled in the synthetic masks:",
        "",
    ]
    syn = options.synthetic_root
    if not os.path.isdir(os.path.join(syn, FILTERED_MASKS_DIR)):
        lines.append("(the filter has not run)")
    elif not has_planted_defects(options):
        lines.append(f"({NO_DEFECTS}; the filter removed {_filtered_share(syn)} of their labelled pixels)")
    else:
        lines += _defect_rows(defect_counts(options, os.path.join(syn, FILTERED_MASKS_DIR)))
    return "\n".join(lines) + "\n"


def write_table(options: PipelineOptions, command: str, path: Optional[str] = None) -> str:
    """Render the table and write it atomically to ``<output root>/freemask_pipeline.md``; returns the text."""
    text = render_table(options, command)
    atomic_write_bytes(path or os.path.join(options.output_root, TABLE_NAME), text.encode("utf-8"))
    return text
