#!/usr/bin/env bash
# Baseline benchmarks with llama.cpp's own tools, to compare rill against.
#
# Usage: scripts/bench_llamacpp.sh [MODEL] [THREADS] [extra llama-bench args...]
#          llama-bench -m MODEL -t THREADS -p 512 -n 128 -r 3: prints its markdown table
#          (pp512 = prompt processing of 512 tokens, tg128 = generating 128 tokens, tokens/s).
#        scripts/bench_llamacpp.sh --batched [MODEL] [THREADS] [extra llama-batched-bench args...]
#          llama-batched-bench -m MODEL -t THREADS -c 16384 -b 2048 -ub 512 -npp 32 -ntg 128
#          -npl 1,4,16,64: aggregate decode of 1/4/16/64 parallel sequences (32-token prompts,
#          128 generated tokens each), the anchor for rill-bench's concurrency levels.
#          -c is 16384, not 8192: without a unified KV cache each sequence gets c/64 cells,
#          and 8192/64 = 128 < 32+128, so llama-batched-bench would skip the 64 level.
#          Extra args are appended, and list options (-npl, -ntg, -npp) add to the lists, so
#          shrink a run with RILL_BATCHED_NPL (default 1,4,16,64) and RILL_BATCHED_NTG (128).
#   MODEL   defaults to models/SmolLM2-135M-Instruct.Q4_1.gguf (fetched by scripts/fetch_model.sh)
#   THREADS defaults to 2
# The tools are built (once, cached) by scripts/build_llamacpp.sh from the llama.cpp copy in
# the llama-cpp-python 0.3.36 sdist (commit 0c1e57098), CPU only, Release, GGML_NATIVE=ON.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
mode=bench
if [ "${1:-}" = "--batched" ]; then
  mode=batched
  shift
fi
model=${1:-$here/models/SmolLM2-135M-Instruct.Q4_1.gguf}
threads=${2:-2}
shift $(( $# < 2 ? $# : 2 ))

if [ ! -f "$model" ] && [ "$model" = "$here/models/SmolLM2-135M-Instruct.Q4_1.gguf" ]; then
  "$here/scripts/fetch_model.sh" >/dev/null
fi

if [ "$mode" = bench ]; then
  bin=$("$here/scripts/build_llamacpp.sh" llama-bench)
  "$bin/llama-bench" -m "$model" -t "$threads" -p 512 -n 128 -r 3 "$@"
else
  bin=$("$here/scripts/build_llamacpp.sh" llama-batched-bench)
  "$bin/llama-batched-bench" -m "$model" -t "$threads" -c 16384 -b 2048 -ub 512 \
    -npp 32 -ntg "${RILL_BATCHED_NTG:-128}" -npl "${RILL_BATCHED_NPL:-1,4,16,64}" "$@"
fi
