#!/usr/bin/env bash
# Builds and tests the C++ binding: installs cmake and GoogleTest if missing, fetches the
# default model, builds rill (cargo, release), configures and builds bindings/cpp into
# bindings/cpp/build, runs the tests with ctest (the GoogleTest cases and the stream
# example), validates the recorded streams with tests/check_stream.py, then builds and
# runs the tests once more under AddressSanitizer + LeakSanitizer (bindings/cpp/build/asan).
# RILL_LIB_DIR / RILL_INCLUDE may point at a prebuilt library; otherwise the repository's
# ${CARGO_TARGET_DIR:-target}/release and include/ are used.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
step() { printf '\n== %s\n' "$*"; }

step "cmake and GoogleTest"
if ! command -v cmake >/dev/null || [ ! -e /usr/include/gtest/gtest.h ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq cmake libgtest-dev
fi

step "default model"
model=$(./scripts/fetch_model.sh)
export RILL_MODEL="$model"

if [ -z "${RILL_LIB_DIR:-}" ]; then
  step "rill (cargo build --release)"
  cargo build --release --locked --lib
  target=$(cd "${CARGO_TARGET_DIR:-target}" && pwd)
  export RILL_LIB_DIR="$target/release"
fi
export RILL_INCLUDE=${RILL_INCLUDE:-$root/include}
jobs=$(nproc)

# build DIR [CMAKE ARGS...]: configure and build the binding into DIR.
build() {
  local dir=$1; shift
  cmake -S "$here" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRILL_LIB_DIR="$RILL_LIB_DIR" \
    -DRILL_INCLUDE="$RILL_INCLUDE" -DRILL_MODEL="$model" "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
}

step "build (bindings/cpp/build)"
build "$here/build" -DRILL_CPP_SANITIZE=

step "ctest"
streams="$here/build/streams"
rm -rf "$streams" && mkdir -p "$streams"
RILL_CPP_STREAM_DIR="$streams" ctest --test-dir "$here/build" --output-on-failure -j 2

step "recorded streams against OpenAI's types (tests/check_stream.py)"
python3 -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
python3 tests/check_stream.py "$streams"/*.jsonl

step "example"
"$here/build/rill_stream" "$model" "Name the capital of France." 32

step "AddressSanitizer + LeakSanitizer (bindings/cpp/build/asan)"
build "$here/build/asan" -DRILL_CPP_SANITIZE=address
ASAN_OPTIONS=detect_leaks=1 ctest --test-dir "$here/build/asan" --output-on-failure -j 2

step "C++ binding: all tests passed"
