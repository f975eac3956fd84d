#!/usr/bin/env bash
# Generates the seeded tiny test models (llama, qwen2, qwen3: HF safetensors directories,
# GGUF files in 14 tensor types) and llama.cpp's reference logits on them, once, under
# ${RILL_CACHE:-~/.cache/rill}/tiny-models/v3/, and prints that directory. The layout is
# documented at the top of scripts/models/tiny_models.py. Needs python3 with the packages
# in tests/requirements-models.txt (llama-cpp-python, gguf, numpy, tokenizers).
# Idempotent: a finished directory (manifest.json present) is reused; the generator builds
# in a temporary directory and renames it into place, so an interrupted run leaves nothing.
set -euo pipefail
# shellcheck source=lib/cached_generator.sh
. "$(dirname "$0")/lib/cached_generator.sh"
cached_generate v3 manifest.json scripts/models/tiny_models.py  # v3: keep in step with VERSION in scripts/models/tiny_models.py
