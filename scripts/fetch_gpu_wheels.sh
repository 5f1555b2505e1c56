#!/usr/bin/env bash
# Wheels of the packages the GPU machine's image lacks (scripts/gpu_wheels.txt: the pipeline's needs beyond the
# image's torch, lightning, timm, torchmetrics, numpy, scipy, matplotlib, ...), for its Python 3.12 on x86-64.
# Run here, where pip reaches the registry; scripts/gpu_paper.sh installs them there. Output: .whl/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
PIP=${PIP:-python3 -m pip}
mkdir -p .whl
platforms=()
for tag in manylinux_2_39 manylinux_2_35 manylinux_2_34 manylinux_2_31 manylinux_2_28 manylinux_2_27 manylinux_2_24 \
           manylinux_2_17 manylinux2014 manylinux1; do
    platforms+=(--platform "${tag}_x86_64")
done
$PIP download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
    -d .whl -r scripts/gpu_wheels.txt
du -sh .whl
