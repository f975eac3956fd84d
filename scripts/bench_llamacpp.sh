#!/usr/bin/env bash
# Baseline decode/prefill benchmark with llama.cpp's own `llama-bench`, to compare rill against.
#
# Usage: scripts/bench_llamacpp.sh [MODEL] [THREADS] [extra llama-bench args...]
#   MODEL   defaults to models/SmolLM2-135M-Instruct.Q4_1.gguf (fetched by scripts/fetch_model.sh)
#   THREADS defaults to 2
# Runs: llama-bench -m MODEL -t THREADS -p 512 -n 128 -r 3   and prints its markdown table
# (pp512 = prompt processing of 512 tokens, tg128 = generating 128 tokens, both in tokens/s).
#
# llama.cpp is the copy vendored in the llama-cpp-python==0.3.36 sdist (llama.cpp commit
# 0c1e57098 per that release's CHANGELOG; the sdist is not a git checkout, so the commit is
# passed to cmake explicitly). The sdist comes from PyPI (pip download), and only the
# `llama-bench` target is built: CPU only, Release, GGML_NATIVE=ON, static libs, no CURL/OpenSSL.
# Everything is cached under ${RILL_CACHE:-~/.cache/rill}:
#   llama.cpp-src/    unpacked vendor/llama.cpp
#   llama.cpp-build/  cmake build dir; binary at llama.cpp-build/bin/llama-bench
# Delete those directories to force a rebuild. Building takes a few minutes on 2 cores.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${RILL_CACHE:-$HOME/.cache/rill}
lcp_version=0.3.36
lcpp_commit=0c1e57098
src="$cache/llama.cpp-src"
build="$cache/llama.cpp-build"
bin="$build/bin/llama-bench"

model=${1:-$here/models/SmolLM2-135M-Instruct.Q4_1.gguf}
threads=${2:-2}
shift $(( $# < 2 ? $# : 2 ))

if [ ! -f "$model" ] && [ "$model" = "$here/models/SmolLM2-135M-Instruct.Q4_1.gguf" ]; then
  "$here/scripts/fetch_model.sh" >/dev/null
fi

if [ ! -x "$bin" ]; then
  mkdir -p "$cache"
  if [ ! -f "$src/CMakeLists.txt" ]; then
    echo "fetching llama-cpp-python==$lcp_version sdist (for its vendored llama.cpp) ..." >&2
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    python3 -m pip download --quiet --no-binary :all: --no-deps "llama-cpp-python==$lcp_version" -d "$tmp" >&2
    tar -xzf "$tmp"/llama_cpp_python-"$lcp_version".tar.gz -C "$tmp"
    rm -rf "$src.part"
    mv "$tmp/llama_cpp_python-$lcp_version/vendor/llama.cpp" "$src.part"
    mv "$src.part" "$src"
  fi
  echo "building llama-bench into $build ..." >&2
  cmake -S "$src" -B "$build" -G "$(command -v ninja >/dev/null && echo Ninja || echo 'Unix Makefiles')" \
    -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
    -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_TOOLS=ON \
    -DLLAMA_BUILD_COMMIT="$lcpp_commit" >&2
  cmake --build "$build" --target llama-bench -j "$(nproc)" >&2
fi

"$bin" -m "$model" -t "$threads" -p 512 -n 128 -r 3 "$@"
