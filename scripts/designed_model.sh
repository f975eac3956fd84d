#!/usr/bin/env bash
# Generates the designed Qwen3 test model (constructed weights whose greedy output follows
# designed reasoning / tool-call / answer token sequences; see the top of
# scripts/models/designed_model.py) once, under
# ${RILL_CACHE:-~/.cache/rill}/tiny-models/designed-v1/, and prints that directory. Needs
# python3 with numpy, jinja2 and tokenizers (tests/requirements-models.txt) and the Qwen3
# tokenizer (scripts/fetch_tokenizers.sh, run from here). About 10 s.
# Idempotent: a finished directory (designed.json present) is reused; the generator builds
# in a temporary directory and renames it into place, so an interrupted run leaves nothing.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${RILL_CACHE:-$HOME/.cache/rill}
version=designed-v1  # keep in step with VERSION in scripts/models/designed_model.py
out="$cache/tiny-models/$version"
if [ -f "$out/designed.json" ]; then echo "$out"; exit 0; fi
tok=$("$here/scripts/fetch_tokenizers.sh")
mkdir -p "$cache/tiny-models"
# One generator at a time (parallel test binaries wait here, then reuse the result).
exec 9>"$cache/tiny-models/.lock-$version"
flock 9
if [ -f "$out/designed.json" ]; then echo "$out"; exit 0; fi
rm -rf "$cache/tiny-models/.$version.tmp-"*  # left by a killed run
python3 "$here/scripts/models/designed_model.py" --tokenizer "$tok/qwen3" --out "$out" >&2
[ -f "$out/designed.json" ] || { echo "designed_model.py did not produce $out/designed.json" >&2; exit 1; }
echo "$out"
