#!/usr/bin/env bash
# CI (issue 28): FreeMask as `pip install` gives it to a user, with no checkout. The sdist is built, a wheel from it
# (pip's path for `pip install freemask-X.tar.gz`, so MANIFEST.in and setup.py's config copy are both exercised),
# installed (not editable) into a fresh virtual environment without the system site packages, then the toy main job
# runs from an empty directory with a short schedule: the shipped config is found by name, the toy data is generated
# where DETECTRON2_DATASETS points. Any failure fails CI; the step's time is printed at the end.
# Usage: .ci/wheel_check.sh [WORK_DIR]   (default: a temporary folder, removed afterwards)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
if [[ $# -gt 0 ]]; then
    work="$1"
    mkdir -p "$work"
else
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
fi
started=$SECONDS
unset PYTHONPATH  # nothing of the checkout may be imported from here on

cd "$repo"
python setup.py -q sdist -d "$work/dist"
python -m pip wheel -q --no-deps -w "$work/dist" "$work"/dist/freemask-*.tar.gz
wheel="$(ls "$work"/dist/freemask-*.whl)"
python - "$wheel" <<'EOF'
import glob, os, sys, zipfile
prefix = "freemask/model_zoo/configs/"
shipped = {n[len(prefix):] for n in zipfile.ZipFile(sys.argv[1]).namelist() if n.startswith(prefix)}
repo = {os.path.relpath(p, "configs") for p in glob.glob("configs/**/*.yaml", recursive=True)}
if shipped != repo:
    sys.exit(f"error: the wheel's configs differ from configs/: missing {sorted(repo - shipped)[:5]}, "
             f"extra {sorted(shipped - repo)[:5]}")
print(f"wheel {os.path.basename(sys.argv[1])}: {len(shipped)} configs")
EOF

python -m venv --clear "$work/venv"
"$work/venv/bin/python" -m pip install -q -c constraints.txt torch==2.14.1 torchvision==0.29.1 "$wheel"
echo "wheel installed in a clean venv: $((SECONDS - started)) s"

mkdir -p "$work/empty"
cd "$work/empty"
export PATH="$work/venv/bin:$PATH" DETECTRON2_DATASETS="$work/datasets"
python -c "import freemask, sys; sys.exit(0 if '/site-packages/' in freemask.__file__ else f'{freemask.__file__}')"
freemask make-toy --num-train 8 --num-val 4 --seeds 1
freemask train --config-file configs/toy/semantic-segmentation/semantic_fpn_R18_toy.yaml --num-gpus 1 \
    SOLVER.IMS_PER_BATCH 4 SOLVER.MAX_ITER 4 SOLVER.CHECKPOINT_PERIOD 4 SOLVER.WARMUP_ITERS 2 TEST.EVAL_PERIOD 0 \
    DATALOADER.NUM_WORKERS 2
# The config's OUTPUT_DIR, relative to the working directory: trained, then evaluated once at the end.
test -f output/toy_semantic_fpn_R18/model_final.pth
test -f output/toy_semantic_fpn_R18/inference/sem_seg_results.json
echo "wheel check passed in $((SECONDS - started)) s"
