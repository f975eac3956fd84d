# Sourced by scripts/tiny_models.sh and scripts/designed_model.sh: runs a test-model
# generator once and caches its output.
#   cached_generate VERSION MARKER GENERATOR
# prints ${RILL_CACHE:-~/.cache/rill}/tiny-models/VERSION, running
# `python3 GENERATOR --tokenizer <qwen3 tokenizer> --out DIR` unless DIR/MARKER exists.
# The generator builds in a temporary sibling and renames it into place, so an
# interrupted run leaves nothing; one generator per VERSION runs at a time (parallel test
# binaries wait on the lock, then reuse the result).
cached_generate() {
  local version=$1 marker=$2 generator=$3
  local here cache out tok
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  cache=${RILL_CACHE:-$HOME/.cache/rill}
  out="$cache/tiny-models/$version"
  if [ -f "$out/$marker" ]; then echo "$out"; return 0; fi
  tok=$("$here/scripts/fetch_tokenizers.sh")
  mkdir -p "$cache/tiny-models"
  exec 9>"$cache/tiny-models/.lock-$version"
  flock 9
  if [ -f "$out/$marker" ]; then echo "$out"; return 0; fi
  rm -rf "$cache/tiny-models/.$version.tmp-"*  # left by a killed run
  python3 "$here/$generator" --tokenizer "$tok/qwen3" --out "$out" >&2
  [ -f "$out/$marker" ] || { echo "$generator did not produce $out/$marker" >&2; return 1; }
  echo "$out"
}
