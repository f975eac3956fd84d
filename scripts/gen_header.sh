#!/usr/bin/env bash
# Regenerates include/rill.h from src/ffi/ (cbindgen runs in build.rs) after a C API
# change; tests/header.rs fails until the committed header matches.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(cargo build --quiet --message-format=json | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "build-script-executed" and "#rill@" in m["package_id"]:
        out = m["out_dir"]
print(out)')
cp "$out/rill.h" include/rill.h
echo "include/rill.h updated from $out/rill.h"
