#!/usr/bin/env bash
# Every measurement that needs the GPU, in one command: what a session lent the H200 runs first (issue 17, item 4).
#
#   bash bench/gpu_check.sh              # on the GPU machine: at most 580 s of step limits, under the device tool's
#                                        # 600 s per call (run it with timeout_s 600)
#   bash bench/gpu_check.sh --dry-run    # anywhere, on CPU: the same steps at toy sizes (checks the script, not speed)
#
# Steps, each under its own time limit; a step that fails is reported and the next one still runs:
#   1. environment (GPU, torch, the project's env line)
#   2. build the MSDeformAttn op for sm_90 (ops/, nvcc) into /tmp/site            [skipped by --dry-run]
#   3. its CUDA tests (tests/modeling/test_ms_deform_attn_cuda.py)
#   4. bench/ms_deform_attn.py: PyTorch path vs the op, fp32 / bf16, Mask2Former's 512 and 1024 shapes
#   5. bench/train_step.py: Mask2Former Swin-T at 512, batch 16, fp32 / bf16 / bf16 + channels_last
#   6. bench/inference.py: the same model at batch 1 and 16
#   7. bench/filter_throughput.py: the FreeMask filter against the release's design
# Every table goes to stdout and to $OUT/gpu_check.md ($OUT: the folder whose files the device tool brings back;
# ./gpu_check_out when unset), so the figures come back even when a later step is killed. Copy them into
# bench/RESULTS.md with the machine, the command and the date.
#
# The GPU machine has torch but not every dependency of this project (fvcore, iopath, yacs, pycocotools,
# open-clip-torch, ...) and cannot download: `bash bench/gpu_wheels.sh` fetches them here into .whl/, the device
# call carries .whl (and lists it in `carry`), and this script installs them into /tmp/site first.
set -u -o pipefail

DRY_RUN=0
if [ "${1:-}" = "--dry-run" ]; then DRY_RUN=1; elif [ $# -gt 0 ]; then
    echo "usage: bash bench/gpu_check.sh [--dry-run]" >&2
    exit 2
fi
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO" || exit 1
OUT_DIR="${OUT:-$REPO/gpu_check_out}"
mkdir -p "$OUT_DIR" /tmp/site
REPORT="$OUT_DIR/gpu_check.md"
export PYTHONPATH="/tmp/site:$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PYTHON="${PYTHON:-python3}"
FAILED=()

# step NAME SECONDS COMMAND...: run COMMAND under a time limit, its output to the console and the report.
step() {
    local name="$1" limit="$2"
    shift 2
    local start=$SECONDS
    printf '\n## %s\n\n```\n$ %s\n' "$name" "$*" >>"$REPORT"
    echo "== $name"
    timeout "$limit" "$@" 2>&1 | tee -a "$REPORT"
    local rc=${PIPESTATUS[0]}
    printf '```\n%s: exit %s after %s s (limit %s s)\n' "$name" "$rc" "$((SECONDS - start))" "$limit" | tee -a "$REPORT"
    [ "$rc" -eq 0 ] || FAILED+=("$name (exit $rc)")
}

printf '# bench/gpu_check.sh%s, %s\n' "$([ $DRY_RUN -eq 1 ] && echo ' --dry-run')" "$(date -u +%Y-%m-%dT%H:%MZ)" >"$REPORT"

if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    step "carried wheels" 40 "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --upgrade --target /tmp/site .whl/*.whl
fi
DEVICE=cuda
[ $DRY_RUN -eq 1 ] && DEVICE=cpu
step "environment" 20 bash -c "nvidia-smi 2>/dev/null | head -15; $PYTHON -c 'from freemask.utils.collect_env import \
collect_env_info as c, format_env_info as f; print(f(c(\"$DEVICE\")))'"

SWIN_T=configs/ade20k-150/mask2former/maskformer2_swin_tiny_bs16_160k.yaml
if [ $DRY_RUN -eq 1 ]; then
    echo "--dry-run: the op build is skipped (nvcc takes minutes; CPU runs use the PyTorch path)" | tee -a "$REPORT"
    step "MSDeformAttn CUDA tests" 120 "$PYTHON" -m pytest -q tests/modeling/test_ms_deform_attn_cuda.py
    step "MSDeformAttn bench" 120 "$PYTHON" bench/ms_deform_attn.py --device cpu --iters 1 --warmup 1
    step "train step" 300 "$PYTHON" bench/train_step.py --config-file configs/toy/mask2former_R18_toy.yaml \
        --device cpu --batch-size 2 --size 64 --iters 1 --warmup 1 --variants fp32,bf16
    step "inference" 300 "$PYTHON" bench/inference.py --config-file configs/toy/mask2former_R18_toy.yaml \
        --device cpu --batch-size 1,2 --size 64 --iters 1 --warmup 1 --variants fp32
    step "filter throughput" 300 "$PYTHON" bench/filter_throughput.py --size 64x64 --num-images 4 --seeds 2 \
        --batch-size 4 --num-workers 0 --rounds 1 MODEL.DEVICE cpu
else
    step "build the op (sm_90)" 200 env CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}" TORCH_CUDA_ARCH_LIST=9.0 \
        "$PYTHON" -m pip install -q --no-build-isolation --no-deps --target /tmp/site ./ops
    step "MSDeformAttn CUDA tests" 60 "$PYTHON" -m pytest -q tests/modeling/test_ms_deform_attn_cuda.py
    step "MSDeformAttn bench" 60 "$PYTHON" bench/ms_deform_attn.py
    step "train step" 90 "$PYTHON" bench/train_step.py --config-file "$SWIN_T" --device cuda --batch-size 16 \
        --size 512 --variants fp32,bf16,bf16+cl
    step "inference" 60 "$PYTHON" bench/inference.py --config-file "$SWIN_T" --device cuda --batch-size 1,16 \
        --size 512 --variants fp32,bf16,bf16+cl
    step "filter throughput" 50 "$PYTHON" bench/filter_throughput.py --size 512x512 --num-images 32 \
        --batch-size 16 --num-workers 8
fi

if [ ${#FAILED[@]} -gt 0 ]; then
    printf '\nFailed steps: %s\n' "${FAILED[*]}" | tee -a "$REPORT"
    exit 1
fi
printf '\nAll steps passed; the tables are in %s\n' "$REPORT"
