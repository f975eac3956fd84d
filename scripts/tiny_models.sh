#!/usr/bin/env bash
# Generates the seeded tiny test models (llama, qwen2, qwen3: HF safetensors directories,
# GGUF files in 14 tensor types) and llama.cpp's reference logits on them, once, under
# ${RILL_CACHE:-~/.cache/rill}/tiny-models/v3/, and prints that directory. The layout is
# documented at the top of scripts/models/tiny_models.py. Needs python3 with the packages
# in tests/requirements-models.txt (llama-cpp-python, gguf, numpy, tokenizers).
# Idempotent: a finished directory (manifest.json present) is reused; the generator builds
# in a temporary directory and renames it into place, so an interrupted run leaves nothing.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${RILL_CACHE:-$HOME/.cache/rill}
version=v3  # keep in step with VERSION in scripts/models/tiny_models.py
out="$cache/tiny-models/$version"
if [ -f "$out/manifest.json" ]; then echo "$out"; exit 0; fi
tok=$("$here/scripts/fetch_tokenizers.sh")
mkdir -p "$cache/tiny-models"
# One generator at a time (parallel test binaries wait here, then reuse the result).
exec 9>"$cache/tiny-models/.lock"
flock 9
if [ -f "$out/manifest.json" ]; then echo "$out"; exit 0; fi
rm -rf "$cache/tiny-models/.$version.tmp-"*  # left by a killed run
python3 "$here/scripts/models/tiny_models.py" --tokenizer "$tok/qwen3" --out "$out" >&2
[ -f "$out/manifest.json" ] || { echo "tiny_models.py did not produce $out/manifest.json" >&2; exit 1; }
echo "$out"
