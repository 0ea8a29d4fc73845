#!/usr/bin/env bash
# Fetch, on a machine that reaches PyPI, the Python packages bench/gpu_check.sh needs and the GPU machine's image
# lacks, into .whl/ (git-ignored through .git/info/exclude), for its Python 3.12 on x86-64 Linux:
#
#   bash bench/gpu_wheels.sh        # then call the device tool with carry [".whl"] and `bash bench/gpu_check.sh`
#
# The image has torch, torchvision, numpy, scipy, opencv, pyyaml, tqdm, tabulate, tensorboard, regex, safetensors,
# huggingface-hub and portalocker (the lent machine's package list); missing are the ones below. timm is carried at
# this project's pin because the Swin override relies on timm 1.0 internals; transformers at our pin (the image
# has 5.17) beside diffusers, which the image lacks (bench/generate.py). Pure-Python packages published only as
# source (fvcore, iopath, yacs) are built into wheels here; compiled ones are downloaded for cp312 manylinux.
set -eu -o pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >>.git/info/exclude
mkdir -p .whl
PURE=(fvcore==0.1.5.post20221221 iopath==0.1.10 yacs==0.1.8 termcolor==3.1.0 open-clip-torch==3.3.0 ftfy==6.3.1
      wcwidth==0.2.13 timm==1.0.31 diffusers==0.42.1 transformers==5.24.0)
python3 -m pip wheel -q --no-deps -w .whl "${PURE[@]}"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl pycocotools==2.0.10
ls -la .whl
du -sh .whl
