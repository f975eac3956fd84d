#!/usr/bin/env bash
# Builds and gathers, HERE (a machine with the Rust toolchain), what the GPU machine runs:
# that machine has no Rust toolchain and no network, and a device call carries at most
# 64 MiB (the working tree included). Writes .gpu/ (git-ignored):
#
#   .gpu/bin/rill-bench          release, --features cuda, stripped
#   .gpu/bin/cuda_kernels        the GPU test binaries (harness = false), same build
#   .gpu/bin/cuda_engine
#   .gpu/tokenizers/{qwen3,llama3}/tokenizer.json.gz, tokenizer_config.json
#                                (scripts/fetch_tokenizers.sh; make_models.py reads .gz)
#   .gpu/scripts/                a copy of scripts/gpu (the version the binaries match)
#   .gpu/MANIFEST                commit, build settings, sizes
#
# and fails when .gpu/ is over RILL_GPU_PACK_LIMIT_MIB (default 60), listing the sizes.
# A test binary whose tests/<name>.rs is missing is reported and left out (run_all.sh
# then records it as MISSING). Then, here, `bash scripts/gpu/rehearse.sh` runs the packed
# binaries on the emulated driver (a check of the pack, not of the GPU), and on the GPU
# machine:
#   bash scripts/gpu/run_all.sh check     (carry: [".gpu"])
#   bash scripts/gpu/run_all.sh bench qwen3-0.6b   (then bench llama3-8b; carry: [".gpu"])
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
out=$root/.gpu
limit_mib=${RILL_GPU_PACK_LIMIT_MIB:-60}
tests=(cuda_kernels cuda_engine)

present=()
for t in "${tests[@]}"; do
  if [ -f "tests/$t.rs" ]; then
    present+=("$t")
  else
    echo "pack.sh: WARNING: tests/$t.rs is not in this tree: $t is not packed" >&2
  fi
done

echo "pack.sh: cargo build --release --features cuda (rill-bench) ..." >&2
cargo build --release --features cuda --bin rill-bench
test_args=()
for t in "${present[@]}"; do test_args+=(--test "$t"); done
json=$(mktemp)
trap 'rm -f "$json"' EXIT
echo "pack.sh: cargo test --release --features cuda --no-run ${test_args[*]} ..." >&2
cargo test --release --features cuda --no-run --message-format=json "${test_args[@]}" >"$json"

target_dir=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')

rm -rf "$out"
mkdir -p "$out/bin" "$out/tokenizers" "$out/scripts"
cp "$target_dir/release/rill-bench" "$out/bin/"
python3 - "$json" "$out/bin" "${present[@]}" <<'EOF'
import json, shutil, sys
path, dest, wanted = sys.argv[1], sys.argv[2], set(sys.argv[3:])
found = {}
for line in open(path):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    t = m.get("target", {})
    if m.get("reason") == "compiler-artifact" and "test" in t.get("kind", []) and t.get("name") in wanted and m.get("executable"):
        found[t["name"]] = m["executable"]
missing = wanted - set(found)
if missing:
    sys.exit(f"pack.sh: no test executable for {sorted(missing)}")
for name, exe in found.items():
    shutil.copy(exe, f"{dest}/{name}")
    print(f"pack.sh: {name} <- {exe}", file=sys.stderr)
EOF
strip "$out"/bin/*

tok_root=$(bash scripts/fetch_tokenizers.sh | tail -n 1)
for name in qwen3 llama3; do
  mkdir -p "$out/tokenizers/$name"
  gzip -9 -c "$tok_root/$name/tokenizer.json" >"$out/tokenizers/$name/tokenizer.json.gz"
  cp "$tok_root/$name/tokenizer_config.json" "$out/tokenizers/$name/"
done
cp scripts/gpu/*.py scripts/gpu/*.sh "$out/scripts/"

{
  echo "commit: $(git rev-parse HEAD)$(git diff --quiet HEAD || echo ' (with uncommitted changes)')"
  echo "built: $(date -u +%FT%TZ) on $(uname -m), $(rustc --version)"
  echo "features: cuda; profile: release; tests: ${present[*]}"
  (cd "$out" && find . -type f ! -name MANIFEST -printf '%s %p\n' | sort -k2)
} >"$out/MANIFEST"

total=$(du -sb "$out" | cut -f1)
tree=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -n 1 | cut -f1)
echo "pack.sh: .gpu/ is $((total / 1024 / 1024)) MiB ($total bytes); the tracked tree $((tree / 1024 / 1024)) MiB"
(cd "$out" && find . -type f -printf '%10s  %p\n' | sort -rn)
if ((total > limit_mib * 1024 * 1024)); then
  echo "pack.sh: FAILED: .gpu/ is over ${limit_mib} MiB (a device call carries 64 MiB with the tree)" >&2
  exit 1
fi
echo "pack.sh: ok. On the GPU machine: bash scripts/gpu/run_all.sh check, then bench qwen3-0.6b and bench llama3-8b (one call each), carry [\".gpu\"]"
