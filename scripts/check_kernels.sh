#!/usr/bin/env bash
# Compiles every kernels/*.cu with NVRTC for compute_80 and compute_90 and assembles the
# compute_90 PTX with ptxas for sm_90 (registers, spills); no GPU needed. The CUDA 13.0
# wheels (the GPU machine's CUDA) are installed once, pinned, into
# ${RILL_CACHE:-~/.cache/rill}/cuda-wheels/<versions>. Fails on any compile error, any
# warning, any ptxas error or a missing entry point (scripts/check_kernels.py).
set -euo pipefail
cd "$(dirname "$0")/.."
pins=(nvidia-cuda-nvrtc==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cuda-nvcc==13.0.88)
dir="${RILL_CACHE:-$HOME/.cache/rill}/cuda-wheels/nvrtc-13.0.88_runtime-13.0.96_nvcc-13.0.88"
if [ ! -f "$dir/.installed" ]; then
  rm -rf "$dir" && mkdir -p "$dir"
  python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$dir" "${pins[@]}"
  touch "$dir/.installed"
fi
exec python3 scripts/check_kernels.py --cuda-root "$dir" --ptxas "$dir/nvidia/cu13/bin/ptxas" "$@"
