#!/usr/bin/env bash
# Builds llama.cpp tools to compare rill against, from one cached source tree and build dir.
#
# Usage: scripts/build_llamacpp.sh [TARGET...]
#   TARGET defaults to: llama-bench llama-server llama-batched-bench
# Prints the bin directory (on stdout; progress goes to stderr). Targets already built are
# not rebuilt (cmake/ninja decide), so calling it before every benchmark is cheap.
#
# llama.cpp is the copy vendored in the llama-cpp-python==0.3.36 sdist (llama.cpp commit
# 0c1e57098 per that release's CHANGELOG; the sdist is not a git checkout, so the commit is
# passed to cmake explicitly). The sdist comes from PyPI (pip download). Build: CPU only,
# Release, GGML_NATIVE=ON, static libs, no CURL/OpenSSL; the server is built without its
# web UI (LLAMA_BUILD_UI=OFF, LLAMA_USE_PREBUILT_UI=OFF: no npm, no download; the HTTP API
# is unchanged). Everything is cached under ${RILL_CACHE:-~/.cache/rill}:
#   llama.cpp-src/    unpacked vendor/llama.cpp
#   llama.cpp-build/  cmake build dir; binaries in llama.cpp-build/bin/
# Delete those directories to force a rebuild. The first build takes several minutes on 2
# cores (llama-server is the biggest target).
set -euo pipefail
cache=${RILL_CACHE:-$HOME/.cache/rill}
lcp_version=0.3.36
lcpp_commit=0c1e57098
src="$cache/llama.cpp-src"
build="$cache/llama.cpp-build"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(llama-bench llama-server llama-batched-bench)

missing=()
for t in "${targets[@]}"; do
  [ -x "$build/bin/$t" ] || missing+=("$t")
done

if [ ${#missing[@]} -gt 0 ]; then
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
  echo "building ${missing[*]} into $build ..." >&2
  gen=()
  # An existing build dir keeps its generator; a new one uses Ninja when available.
  [ -f "$build/CMakeCache.txt" ] || gen=(-G "$(command -v ninja >/dev/null && echo Ninja || echo 'Unix Makefiles')")
  cmake -S "$src" -B "$build" "${gen[@]}" \
    -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
    -DLLAMA_BUILD_COMMIT="$lcpp_commit" >&2
  cmake --build "$build" --target "${missing[@]}" -j "$(nproc)" >&2
fi
echo "$build/bin"
