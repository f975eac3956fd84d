#!/usr/bin/env bash
# Single-stream decode and prefill of rill and of llama.cpp (llama-bench, built from the
# llama-cpp-python 0.3.36 sdist by scripts/bench_llamacpp.sh) on the same GGUF and thread
# count, in one run on this machine. Run it on an otherwise idle machine.
#   scripts/bench_decode.sh [MODEL] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
threads=${2:-2}
[ -f "$model" ] || ./scripts/fetch_model.sh >/dev/null
cargo build --release --quiet --bin rill-bench
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "== rill"
"${CARGO_TARGET_DIR:-target}/release/rill-bench" --model "$model" --threads "$threads" --prompt-tokens 512 --gen-tokens 128 --runs 3 \
  --levels none --prefix-requests 0
echo "== llama.cpp"
./scripts/bench_llamacpp.sh "$model" "$threads"
