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
# shellcheck source=lib/cached_generator.sh
. "$(dirname "$0")/lib/cached_generator.sh"
cached_generate designed-v1 designed.json scripts/models/designed_model.py  # designed-v1: keep in step with VERSION in scripts/models/designed_model.py
