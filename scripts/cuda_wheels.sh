#!/usr/bin/env bash
# Installs the CUDA 13.0 compiler wheels (the GPU machine's CUDA: NVRTC, the runtime
# headers, ptxas), pinned, once, into ${RILL_CACHE:-~/.cache/rill}/cuda-wheels/<versions>,
# and prints that directory. No GPU needed. Used by scripts/check_kernels.sh and by the
# `cuda` feature's tests in scripts/test.sh (NVRTC through cudarc).
set -euo pipefail
pins=(nvidia-cuda-nvrtc==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cuda-nvcc==13.0.88)
dir="${RILL_CACHE:-$HOME/.cache/rill}/cuda-wheels/nvrtc-13.0.88_runtime-13.0.96_nvcc-13.0.88"
if [ ! -f "$dir/.installed" ]; then
  rm -rf "$dir" && mkdir -p "$dir"
  python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$dir" "${pins[@]}" >&2
  touch "$dir/.installed"
fi
echo "$dir"
