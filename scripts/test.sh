#!/usr/bin/env bash
# The test command (README, .ci/run): installs what a fresh machine lacks, fetches the
# default model (cached), and runs every test:
#   1. cargo fmt --check and clippy -D warnings; every kernels/*.cu compiled with NVRTC for
#      sm_80 and sm_90 (scripts/check_kernels.sh; no GPU needed)
#   2. Rust unit and integration tests (engine, llama.cpp fidelity, header drift; the
#      tiny llama/qwen2/qwen3 models in every GGUF type and as safetensors against
#      llama.cpp; tokenizers and chat templates against llama.cpp, tokenizers and jinja2;
#      the designed qwen3 model's reasoning / tool-call sequences); then with the `cuda`
#      feature: clippy, the unit tests and tests/cuda_device.rs (no GPU needed), the
#      kernel parity tests on the CPU kernel emulator, and the GPU suites (cuda_kernels,
#      cuda_engine's greedy parity) on the emulated CUDA driver
#   3. the C API test in C (tests/c), its streams and its rill_engine_generate Responses
#      validated with OpenAI's types
#   4. rill-cli end to end: --jsonl stream validated, reasoning on stderr, bad arguments
#      exit non-zero
#   5. the conformance suite (tests/conformance, pytest): requests through the C API,
#      every event checked against OpenAI's types and the invariants; golden streams
#   6. every language binding's own suite (bindings/*/test.sh), the Go HTTP server
#      driven by OpenAI's Python client included
# Build outputs go to ${CARGO_TARGET_DIR:-target}.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
target=${CARGO_TARGET_DIR:-target}
step() { printf '\n== %s\n' "$*"; }

step "python test dependencies"
python3 -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt \
  -r tests/requirements-models.txt

step "default model"
model=$(./scripts/fetch_model.sh)
export RILL_MODEL="$model"

step "model test data (real tokenizers, tiny llama/qwen2/qwen3 models and llama.cpp references, the designed qwen3 model; cached)"
./scripts/fetch_tokenizers.sh
./scripts/tiny_models.sh
designed=$(./scripts/designed_model.sh)
export RILL_DESIGNED_MODEL="$designed"

step "format and lint"
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings

step "CUDA kernels compile with NVRTC (sm_80, sm_90; no GPU needed)"
./scripts/check_kernels.sh

step "rust tests"
cargo test --locked

step "the cuda feature (no GPU needed: lint, unit tests, the kernels on the CPU emulator)"
# `kernel-emu` is `cuda` plus the kernel emulator (tests/kernel_emu/). The driver probe,
# device config, kernel registry and PTX cache, the launch plans' checks and the step
# staging; tests/kernel_emu.rs runs the kernel parity tests on the CPU through the real
# kernels/*.cu sources; the GPU test binaries (cuda_kernels, cuda_engine) build and print
# NOT RUN here (never counted as passed). The heavy integration tests are not run twice.
cargo clippy --all-targets --locked --features kernel-emu -- -D warnings
# NVRTC 13.0 from the pinned wheels: the kernel registry compiles every embedded kernel
# through cudarc for compute_80 and compute_90 (and caches the PTX).
cuda_wheels=$(./scripts/cuda_wheels.sh)/nvidia/cu13
LD_LIBRARY_PATH="$cuda_wheels/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" RILL_CUDA_INCLUDE="$cuda_wheels/include" \
  cargo test --locked --features kernel-emu --lib --test cuda_device --test cuda_kernels \
  --test cuda_engine --test kernel_emu --test fake_driver

step "the GPU suites on the emulated CUDA driver (tests/kernel_emu/fake_cuda.cpp: the CPU, not a GPU)"
# RILL_GPU_TESTS=emulated loads an emulated libcuda/libcublas (the kernel emulator behind
# the driver API): the unchanged GPU path (cudarc, NVRTC's PTX, Gpu::open, the runner,
# packed inputs, CUDA graphs, cuBLAS calls) runs on the CPU, its streams deferring work
# until the host waits (so a missing wait fails). cuda_kernels runs all 25 tests;
# cuda_engine runs the greedy parity of the whole backend with the CPU on the tiny Qwen3
# and Llama models (make_models.py, numpy, cached), and on Qwen3 with chunked prefill,
# the create-time failures (a KV cache or weights that do not fit, a too-old driver, a
# driver without cuBLAS: "auto" runs on the CPU) and a kernel fault mid-decode (every
# stream fails cleanly, the engine is poisoned, no panic),
# the chunked parity again with the step inputs in pageable memory (the fallback), and
# the parity after a graph capture fails (graphs off, decode eager), with a KV cache
# small enough to preempt, and on two engines (Qwen3, Llama) side by side.
# Its transformers-logits tests need torch and its 256-request test ~4 min here: they run
# on the GPU machine (the latter also in scripts/gpu/rehearse.sh --full).
gpu_models=${RILL_CACHE:-$HOME/.cache/rill}/gpu-tiny-models
python3 scripts/gpu/make_models.py --out "$gpu_models" --tokenizers "$(./scripts/fetch_tokenizers.sh)" \
  --models qwen3-tiny,llama-tiny --backend numpy >/dev/null
emulated() {
  LD_LIBRARY_PATH="$cuda_wheels/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" RILL_CUDA_INCLUDE="$cuda_wheels/include" \
    RILL_GPU_TESTS=emulated RILL_GPU_MODELS="$gpu_models" "$@"
}
emulated cargo test --locked --features kernel-emu --test cuda_kernels
emulated cargo test --locked --features kernel-emu --test cuda_engine -- greedy out_of_range at_create device_fault without_cublas

step "release build (cdylib, rill-cli)"
cargo build --release --locked

step "C API test (tests/c/test_api.c)"
target=$(cd "$target" && pwd) # absolute, for the rpath
out="$target/c-test"
rm -rf "$out" && mkdir -p "$out"
gcc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -pthread -Iinclude tests/c/test_api.c \
  -L"$target/release" -lrill -Wl,-rpath,"$target/release" -o "$out/test_api"
"$out/test_api" "$model" "$out"
python3 tests/check_stream.py "$out"/stream_*.jsonl
python3 tests/check_stream.py --response "$out"/response_*.json

step "rill-cli"
cli="$target/release/rill-cli"
"$cli" --model "$model" --prompt "Say 'double bubble bath' ten times fast." --temperature 0 \
  --max-output-tokens 64 --jsonl > "$out/cli.jsonl"
python3 tests/check_stream.py "$out/cli.jsonl"
"$cli" --model "$model" --prompt "Name the capital of France." --temperature 0 | tee "$out/cli.txt"
grep -q Paris "$out/cli.txt"
if "$cli" --model "$model" 2>/dev/null; then echo "rill-cli without a prompt should fail"; exit 1; fi
if "$cli" --model /nonexistent.gguf --prompt hi 2>"$out/err.txt"; then echo "missing model should fail"; exit 1; fi
grep -q /nonexistent.gguf "$out/err.txt"
echo '{"input": "Name a fruit.", "max_output_tokens": 8}' | "$cli" --model "$model" --request - --jsonl > "$out/req.jsonl"
python3 tests/check_stream.py "$out/req.jsonl"
# Logprobs (invariant 10, multi-byte tokens) and a stop string, through the Python checker.
echo '{"input": "Write the word café and the Chinese for hello.", "temperature": 0, "max_output_tokens": 24, "top_logprobs": 5, "include": ["message.output_text.logprobs"], "stop": ["Mandarin"]}' \
  | "$cli" --model "$model" --request - --jsonl > "$out/logprobs.jsonl"
python3 tests/check_stream.py "$out/logprobs.jsonl"
# Reasoning to stderr, the answer to stdout (the designed Qwen3 model's greedy output).
"$cli" --model "$designed" --prompt "Say hello." --temperature 0 >"$out/think.txt" 2>"$out/think.err"
grep -qx "Hello! How can I help?" "$out/think.txt"
grep -q "^\[reasoning\] The user greets me\.$" "$out/think.err"

step "conformance suite (tests/conformance)"
# Streams on the default model, the refusals, golden files, and (marker `parsers`)
# reasoning and tool calls on the designed Qwen3 model.
RILL_LIB_DIR="$target/release" RILL_INCLUDE="$PWD/include" \
  python3 -m pytest -q -p no:cacheprovider tests/conformance

step "language bindings (bindings/*/test.sh, each with its own test runner)"
export RILL_LIB_DIR="$target/release" RILL_INCLUDE="$PWD/include"
for lang in cpp go node java; do
  step "bindings/$lang"
  "bindings/$lang/test.sh"
done

step "all tests passed"
