#!/usr/bin/env bash
# Compiles every kernels/*.cu with NVRTC for compute_80 and compute_90 and assembles the
# compute_90 PTX with ptxas for sm_90 (registers, spills); no GPU needed. The CUDA 13.0
# wheels (the GPU machine's CUDA) are installed once, pinned, into
# ${RILL_CACHE:-~/.cache/rill}/cuda-wheels/<versions>. Fails on any compile error, any
# warning, any ptxas error or a missing entry point (scripts/check_kernels.py).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(./scripts/cuda_wheels.sh)
exec python3 scripts/check_kernels.py --cuda-root "$dir" --ptxas "$dir/nvidia/cu13/bin/ptxas" "$@"
