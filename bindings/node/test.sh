#!/usr/bin/env bash
# Tests the Node binding (bindings/node): installs its pinned npm dependencies with
# `npm ci` (koffi, whose prebuilt binaries ship inside its npm package, and TypeScript for
# the type check; cache ~/.npm), then runs the suite with `node --test`.
#
# Needs Node >= 20 and a built rill: RILL_LIB (the library file) or RILL_LIB_DIR (its
# directory; default <repo>/target/release) and RILL_MODEL (default
# <repo>/models/SmolLM2-135M-Instruct.Q4_1.gguf, which scripts/fetch_model.sh fetches).
# It builds nothing itself.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

export RILL_LIB_DIR=${RILL_LIB_DIR:-$root/target/release}
export RILL_MODEL=${RILL_MODEL:-$root/models/SmolLM2-135M-Instruct.Q4_1.gguf}
lib=${RILL_LIB:-$RILL_LIB_DIR/librill.so}

fail() { echo "bindings/node/test.sh: $*" >&2; exit 1; }
command -v node >/dev/null || fail "node is not installed (Node >= 20 is needed)"
command -v npm >/dev/null || fail "npm is not installed"
major=$(node -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 20 ] || fail "Node $(node --version) is too old: Node >= 20 is needed"
[ -f "$lib" ] || fail "$lib not found: build rill (cargo build --release) or set RILL_LIB / RILL_LIB_DIR"
[ -f "$RILL_MODEL" ] || fail "$RILL_MODEL not found: run scripts/fetch_model.sh or set RILL_MODEL"

cd "$here"
echo "== npm ci (node $(node --version), npm $(npm --version))"
# --ignore-scripts: koffi's install script would only look for the prebuilt binary that
# its package already ships; skipping it keeps the install the same under every npm.
npm ci --ignore-scripts --prefer-offline --no-audit --no-fund --cache "${npm_config_cache:-$HOME/.npm}"

echo "== node --test (library $lib, model $RILL_MODEL)"
node --test --test-concurrency=1 test/*.test.js
