#!/usr/bin/env bash
# Regenerates include/rill.h from src/ffi/ (cbindgen via build.rs) after a C API change.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet
out=$(ls -td target/debug/build/rill-*/out 2>/dev/null | while read -r d; do [ -f "$d/rill.h" ] && echo "$d" && break; done)
cp "$out/rill.h" include/rill.h
echo "include/rill.h updated from $out/rill.h"
