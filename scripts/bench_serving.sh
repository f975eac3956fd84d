#!/usr/bin/env bash
# The serving benchmark: rill (through its C API) and llama.cpp's llama-server (through its
# OpenAI-compatible HTTP API) side by side, same GGUF, same thread count, same workloads
# (prefill 512, single-stream decode 128, concurrency 1/4/16/64 with TTFT/ITL percentiles,
# prefix cache, peak RSS), then llama-batched-bench as the aggregate-decode anchor.
#   scripts/bench_serving.sh [MODEL] [THREADS] [extra rill-bench args...]
# Writes the JSON to bench-serving.json (override with RILL_BENCH_JSON). Run it on an
# otherwise idle machine; it takes several minutes. Smoke run (RILL_BENCH_SKIP_BATCHED=1
# skips llama-batched-bench; RILL_BATCHED_NPL/RILL_BATCHED_NTG shrink it instead):
#   RILL_BENCH_SKIP_BATCHED=1 scripts/bench_serving.sh "" 2 --levels 1,4 --gen-tokens 16 --runs 1 --prefix-requests 3
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
[ -n "$model" ] || model=models/SmolLM2-135M-Instruct.Q4_1.gguf
threads=${2:-2}
shift $(( $# < 2 ? $# : 2 ))
[ -f "$model" ] || ./scripts/fetch_model.sh >/dev/null
target=${CARGO_TARGET_DIR:-target}
cargo build --release --quiet --bin rill-bench
bin=$(./scripts/build_llamacpp.sh llama-server llama-batched-bench)
echo "== rill-bench (rill and llama-server)"
"$target/release/rill-bench" --model "$model" --threads "$threads" --backend both \
  --llama-server-bin "$bin/llama-server" --json "${RILL_BENCH_JSON:-bench-serving.json}" "$@"
if [ -z "${RILL_BENCH_SKIP_BATCHED:-}" ]; then
  echo "== llama-batched-bench"
  ./scripts/bench_llamacpp.sh --batched "$model" "$threads"
fi
