#!/usr/bin/env bash
# Rehearses the GPU machine's calls HERE, before device time is spent on them: runs what
# scripts/gpu/pack.sh put in .gpu/ on the emulated CUDA driver (the kernel emulator behind
# libcuda.so.1 and libcublas.so.13, tests/kernel_emu/), as scripts/gpu/run_all.sh runs it:
#
#   - .gpu/bin/cuda_kernels, every test, under RILL_GPU_TESTS=required (the emulated device
#     counts as a GPU here, as on the device machine);
#   - .gpu/bin/cuda_engine: the device-name and KV-refusal checks and the Qwen3 greedy
#     parity with the CPU (with --full also the 256 concurrent requests with cancels,
#     about 4 more minutes; the transformers-logits tests need torch and are left out);
#   - .gpu/bin/rill-bench --device cuda with run_all.sh bench's options at tiny sizes,
#     then .gpu/scripts/summarize.py on its JSON (the tables and the targets' lines).
#
# They run from a folder outside the checkout, with a fresh PTX cache and, on the library
# path, only the emulated libcuda.so.1 and libcublas.so.13 and the NVRTC wheels, so it
# shows that the packed binaries run without cargo or the checkout, find the driver,
# NVRTC and cuBLAS by the names the device machine has, and that the bench's JSON and
# tables come out. (A machine with CUDA installed could lend its own libraries; the script
# says so when the loader knows one.) It shows nothing about speed: the emulator is the
# CPU. About 2 min on 2 cores after the builds (6 with --full).
#
#   bash scripts/gpu/pack.sh && bash scripts/gpu/rehearse.sh [--full]
#
# Needs what the test command fetches (CUDA wheels, tokenizers, numpy for the tiny models);
# the emulated driver is built here (cargo build --features kernel-emu). Exit status 1
# when a step failed.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
full=0
case "${1:-}" in
  "") ;;
  --full) full=1 ;;
  *)
    echo "usage: bash scripts/gpu/rehearse.sh [--full]" >&2
    exit 2
    ;;
esac
if [ ! -x .gpu/bin/cuda_kernels ] || [ ! -x .gpu/bin/cuda_engine ] || [ ! -x .gpu/bin/rill-bench ]; then
  echo "rehearse.sh: .gpu/bin is incomplete: run scripts/gpu/pack.sh first" >&2
  exit 2
fi

echo "rehearse.sh: building the emulated driver (cargo build --features kernel-emu) ..." >&2
# rill's package id (its form depends on the folder's name), then its build script's
# OUT_DIR, which holds fake_cuda/.
pkg=$(cargo metadata --format-version 1 --no-deps --locked |
  python3 -c 'import json, sys; print(next(p["id"] for p in json.load(sys.stdin)["packages"] if p["name"] == "rill"))')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
build_json=$work/build.json
cargo build --locked --features kernel-emu --message-format=json-render-diagnostics >"$build_json"
fake=$(python3 - "$build_json" "$pkg" <<'EOF2'
import json, sys
path, pkg = sys.argv[1], sys.argv[2]
for line in open(path):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "build-script-executed" and m.get("package_id") == pkg:
        print(m["out_dir"] + "/fake_cuda")
EOF2
)
fake=$(printf '%s\n' "$fake" | tail -n 1)
if [ -z "$fake" ] || [ ! -f "$fake/libcuda.so.1" ]; then
  echo "rehearse.sh: the emulated driver was not built (no fake_cuda/ in rill's OUT_DIR)" >&2
  exit 2
fi
cuda_wheels=$(./scripts/cuda_wheels.sh)/nvidia/cu13
models=${RILL_CACHE:-$HOME/.cache/rill}/gpu-tiny-models
python3 scripts/gpu/make_models.py --out "$models" --tokenizers "$(./scripts/fetch_tokenizers.sh)" \
  --models qwen3-tiny --backend numpy >/dev/null

for lib in libcuda.so libcuda.so.1 libcublas.so libcublas.so.13; do
  if ldconfig -p 2>/dev/null | awk '{print $1}' | grep -qx "$lib"; then
    echo "rehearse.sh: NOTE: the loader knows a system $lib; cudarc may open it instead of the emulated one" >&2
  fi
done

# The names the device machine's libraries go by (cudarc tries libcuda.so.1 and
# libcublas.so.13 among its candidates), nothing else.
mkdir -p "$work/lib" "$work/run" "$work/out"
ln -s "$fake/libcuda.so.1" "$work/lib/libcuda.so.1"
ln -s "$fake/libcublas.so.1" "$work/lib/libcublas.so.13"
export LD_LIBRARY_PATH="$work/lib:$cuda_wheels/lib"
export RILL_CUDA_INCLUDE="$cuda_wheels/include"
export RILL_CACHE="$work/cache"
export RILL_GPU_TESTS=required RILL_GPU_MODELS="$models"
# The matmul tuning times GEMV against cuBLAS for minutes on the emulator: cuBLAS only.
export RILL_CUDA_GEMV=off

failed=()
run() { # name command...
  local name=$1 s=$SECONDS
  shift
  echo
  echo "=== [$name] $*"
  if (cd "$work/run" && "$@"); then
    echo ">>> [$name] ok ($((SECONDS - s)) s)"
  else
    echo ">>> [$name] FAILED ($((SECONDS - s)) s)"
    failed+=("$name")
  fi
}

gpu=$root/.gpu
run cuda_kernels "$gpu/bin/cuda_kernels"
filters=(out_of_range kv_cache greedy_qwen3)
((full)) && filters+=(concurrent_256)
run cuda_engine "$gpu/bin/cuda_engine" "${filters[@]}"
# run_all.sh bench's options, at the tiny model's sizes.
bench_status=ok
run rill-bench "$gpu/bin/rill-bench" --model "$models/qwen3-tiny" --device cuda --threads 2 \
  --engine-config '{"reasoning_parser": "none", "tool_call_parser": "none"}' --levels 1,16 \
  --level-prompt-tokens 64 --gen-tokens 16 --prompt-tokens 64 --runs 1 --prefix-requests 2 \
  --ctx-per-slot 1280 --timeout-s 300 --bandwidth-mib 64 \
  --json "$work/out/rill-bench-qwen3-0.6b.json"
[[ " ${failed[*]} " == *" rill-bench "* ]] && bench_status=FAILED
printf 'rill-bench-qwen3-0.6b\t%s\t0\trehearsal\n' "$bench_status" >"$work/steps.tsv"
run summarize python3 "$gpu/scripts/summarize.py" bench "$work/steps.tsv" "$work/out/results.json" \
  "$work/out"
run results-json python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
b = d["bench"]["qwen3-0.6b"]
assert b["decode"]["rill"], "no decode rate"
assert b["levels"]["1"]["rill"]["tokens_per_s"], "no level 1"
assert b["levels"]["16"]["rill"]["tokens_per_s"], "no level 16"
assert b["fraction_of_limit"], "no roofline"
print("results JSON: decode", b["decode"]["rill"], "tok/s; roofline", b["fraction_of_limit"])
' "$work/out/results.json"

echo
if ((${#failed[@]})); then
  echo "rehearse.sh: FAILED: ${failed[*]}"
  exit 1
fi
echo "rehearse.sh: every step passed (the emulated driver, not a GPU: no speed is shown)"
