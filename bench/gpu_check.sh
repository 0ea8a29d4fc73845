#!/usr/bin/env bash
# Every measurement that needs the GPU, in one command: what a session lent the H200 runs first (issues 17 and 16).
#
#   bash bench/gpu_check.sh              # on the GPU machine: 480 s of step limits in all (under 8 minutes, leaving
#                                        # the rest of the device tool's 600 s per call; run it with timeout_s 600)
#   bash bench/gpu_check.sh --dry-run    # anywhere, on CPU: lists every GPU measurement with its limit, then runs the
#                                        # same scripts at toy sizes (checks the script, not speed)
#
# GPU steps, each under its own time limit; a step that fails is reported and the next one still runs:
#   1. environment (GPU, torch, the project's env line)
#   2. build the MSDeformAttn op for sm_90 (ops/, nvcc) into /tmp/site             [dry run: skipped]
#   3. its CUDA tests, kernels v2 and v3 (tests/modeling/ops/test_ms_deform_attn_cuda*.py)
#   4. bench/ms_deform_attn.py: PyTorch path vs kernels v2 and v3; fp32, bf16 and mixed (bf16 value, fp32
#      locations); Mask2Former's 512 and 1024 shapes; each against the bandwidth floor
#   5. TF32 loss curve: toy Mask2Former, 200 training steps with TF32 off and on (bench/train_step.py --loss-every)
#   6. bench/train_step.py: Mask2Former Swin-T 512, batch 16, 50 steps each: fp32, fp32+TF32, bf16 (decoder in fp32,
#      official) without and with TF32, bf16+mixed (decoder in bf16, the op mixed) with v2 and v3, and the PyTorch
#      path for fp32 and bf16+mixed: images/s, peak memory, loss after 50 steps
#   7. bench/inference.py: the same model at batch 1 and 16
#   8. bench/filter_throughput.py: the FreeMask filter against the release's design
# Every table goes to stdout and to $OUT/gpu_check.md ($OUT: the folder whose files the device tool brings back;
# ./gpu_check_out when unset), so the figures come back even when a later step is killed. Copy them into
# bench/RESULTS.md with the machine, the command and the date; the predictions they confirm or refute are there
# ("MSDeformAttn CUDA op", versions table).
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
    step "carried wheels" 20 "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --upgrade --target /tmp/site .whl/*.whl
fi
DEVICE=cuda
[ $DRY_RUN -eq 1 ] && DEVICE=cpu
step "environment" 10 bash -c "nvidia-smi 2>/dev/null | head -15; $PYTHON -c 'from freemask.utils.collect_env import \
collect_env_info as c, format_env_info as f; print(f(c(\"$DEVICE\")))'"

SWIN_T=configs/ade20k/semantic-segmentation/mask2former/maskformer2_swin_tiny_bs16_160k.yaml
TOY=configs/toy/semantic-segmentation/mask2former_R18_toy.yaml
MSDA_TESTS=(tests/modeling/ops/test_ms_deform_attn_cuda.py tests/modeling/ops/test_ms_deform_attn_cuda_stress.py
    tests/modeling/pixel_decoder/test_pixel_decoder_host_syncs.py)
TRAIN_VARIANTS=fp32,fp32+tf32,bf16,bf16+tf32,bf16+mixed,bf16+mixed+v3,fp32+pt,bf16+mixed+pt

# The GPU steps, as (name, limit in seconds, command) in run order; --dry-run lists them, the GPU run runs them.
GPU_STEPS=()
gpu() { GPU_STEPS+=("$1|$2|$(printf '%q ' "${@:3}")"); }  # the command quoted for eval
gpu "build the op (sm_90)" 100 env CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}" TORCH_CUDA_ARCH_LIST=9.0 \
    "$PYTHON" -m pip install -q --no-build-isolation --no-deps --target /tmp/site ./ops
gpu "MSDeformAttn CUDA tests (v2, v3) and the pixel decoder without host syncs" 65 "$PYTHON" -m pytest -q "${MSDA_TESTS[@]}"
gpu "MSDeformAttn bench (pytorch / v2 / v3; fp32 / bf16 / mixed)" 45 "$PYTHON" bench/ms_deform_attn.py --warmup 3 \
    --iters 10
gpu "TF32 loss curve (toy Mask2Former, 200 steps)" 40 "$PYTHON" bench/train_step.py --config-file "$TOY" \
    --device cuda --batch-size 4 --size 128 --variants fp32,fp32+tf32 --warmup 1 --iters 199 --loss-every 20
gpu "train step (Swin-T 512, bs16, 50 steps)" 110 "$PYTHON" bench/train_step.py --config-file "$SWIN_T" --device cuda \
    --batch-size 16 --size 512 --variants "$TRAIN_VARIANTS" --warmup 2 --iters 48
gpu "inference" 25 "$PYTHON" bench/inference.py --config-file "$SWIN_T" --device cuda --batch-size 1,16 --size 512 \
    --variants fp32,bf16 --iters 10
gpu "filter throughput" 25 "$PYTHON" bench/filter_throughput.py --size 512x512 --num-images 32 --batch-size 16 \
    --num-workers 8
gpu "generation: our sampling vs FreestyleNet's (SD 1.x shapes, 512, 10 steps)" 40 "$PYTHON" bench/generate.py \
    --real-size --device cuda --steps 10 --batch-size 8 --rounds 2
FIXED_LIMITS=30  # the carried wheels (20) and the environment (10)

if [ $DRY_RUN -eq 1 ]; then
    total=$FIXED_LIMITS
    {
        echo "GPU measurements (what bash bench/gpu_check.sh runs on the GPU machine):"
        for entry in "${GPU_STEPS[@]}"; do
            IFS='|' read -r name limit command <<<"$entry"
            total=$((total + limit))
            printf -- '- %s, limit %s s: %s\n' "$name" "$limit" "$(eval "printf '%s ' $command")"
        done
        echo "step limits in all: $total s (with the carried wheels and the environment)"
        echo "--dry-run: the op build is skipped (nvcc takes minutes; CPU runs use the PyTorch path)"
    } | tee -a "$REPORT"
    step "MSDeformAttn CUDA tests (v2, v3)" 120 "$PYTHON" -m pytest -q "${MSDA_TESTS[@]}"
    step "MSDeformAttn bench" 120 "$PYTHON" bench/ms_deform_attn.py --device cpu --iters 1 --warmup 1 \
        --dtypes fp32,bf16,mixed
    step "TF32 loss curve" 300 "$PYTHON" bench/train_step.py --config-file "$TOY" --device cpu --batch-size 2 \
        --size 64 --variants fp32,fp32+tf32 --warmup 1 --iters 3 --loss-every 2
    step "train step" 300 "$PYTHON" bench/train_step.py --config-file "$TOY" --device cpu --batch-size 2 --size 64 \
        --iters 1 --warmup 1 --variants "$TRAIN_VARIANTS"
    step "inference" 300 "$PYTHON" bench/inference.py --config-file "$TOY" --device cpu --batch-size 1,2 --size 64 \
        --iters 1 --warmup 1 --variants fp32
    step "filter throughput" 300 "$PYTHON" bench/filter_throughput.py --size 64x64 --num-images 4 --seeds 2 \
        --batch-size 4 --num-workers 0 --rounds 1 MODEL.DEVICE cpu
else
    for entry in "${GPU_STEPS[@]}"; do
        IFS='|' read -r name limit command <<<"$entry"
        eval "step \"\$name\" \"\$limit\" $command"
    done
fi

if [ ${#FAILED[@]} -gt 0 ]; then
    printf '\nFailed steps: %s\n' "${FAILED[*]}" | tee -a "$REPORT"
    exit 1
fi
printf '\nAll steps passed; the tables are in %s\n' "$REPORT"
