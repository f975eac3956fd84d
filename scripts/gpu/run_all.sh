#!/usr/bin/env bash
# Runs the GPU checks or the GPU benchmark in one call, on the GPU machine (no Rust
# toolchain, no network), from the repository root, with what scripts/gpu/pack.sh put in
# .gpu/ (carried: `carry: [".gpu"]`):
#
#   bash scripts/gpu/run_all.sh check [sanitizer] # parity tests, sanitizer (or only the latter)
#   bash scripts/gpu/run_all.sh bench MODEL       # qwen3-0.6b or llama3-8b: one per call
#
# check: nvidia-smi and the tool versions, the binaries' ldd, the CUDA library and header
#   folders (LD_LIBRARY_PATH gets the folders holding libnvrtc.so.13 / libcublas.so.13:
#   /usr/local/cuda, then python's nvidia wheels), the tiny models (make_models.py),
#   transformers' reference (hf_reference.py), cuda_kernels and cuda_engine with
#   RILL_GPU_TESTS=required (cuda_engine's greedy tests again with RILL_CUDA_GEMV=off and
#   =on: both decode matmul paths), then compute-sanitizer memcheck on cuda_kernels and on
#   cuda_engine's transformers-parity tests, and racecheck / synccheck / initcheck on
#   cuda_kernels while time is left. A sanitizer that refuses the device ("Device not
#   supported": gVisor machines) is NOT-RUN, printed loudly, never a pass.
# bench: per model, make it (torch on the GPU), rill-bench on it (decode, prefill, 1000-token
#   prompts with 200-token outputs at 1/16/64/256 concurrent requests, the copy bandwidth
#   and the roofline), then transformers on the same weights (hf_baseline.py).
#
# Every step runs under a timeout that keeps the whole stage under RILL_STAGE_BUDGET_S
# (default 530 s, under the device tool's 10-minute limit); a step that fails, times out
# or is missing is recorded and the stage goes on; steps that no longer fit are SKIPPED.
# Files in $OUT (what comes back; at most 8): <stage>.log (everything printed),
# results-<stage>.json (steps, and for bench the numbers and targets), and for check
# sanitizer.log, for bench rill-bench-<model>.json, hf-<model>.json and ncu-<model>.csv (per-kernel
# GPU time of a short single-stream run under Nsight Compute, when time is left). The short tables
# are printed last. Exit status 1 when any step FAILED, TIMED OUT or was MISSING.
#
# Environment: OUT (default .gpu-out/), RILL_GPU_PYTHON (default /opt/torch/.venv/bin/python3,
# else python3), RILL_GPU_WORK (models and references; default: the largest of /root,
# /tmp and the repository's filesystem), RILL_STAGE_BUDGET_S.
# The stage functions are called by name ("stage_$stage"), which shellcheck cannot follow.
# shellcheck disable=SC2317
set -uo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 2
stage=${1:-}
shift || true
case "$stage" in
  check | bench) ;;
  *)
    echo "usage: bash scripts/gpu/run_all.sh check [sanitizer] | bench qwen3-0.6b|llama3-8b" >&2
    exit 2
    ;;
esac

gpu_dir=$root/.gpu
OUT=${OUT:-$root/.gpu-out}
mkdir -p "$OUT"
budget=${RILL_STAGE_BUDGET_S:-530}
t_start=$SECONDS
steps_tsv=$(mktemp)
PY=${RILL_GPU_PYTHON:-/opt/torch/.venv/bin/python3}
[ -x "$PY" ] || PY=$(command -v python3)
export PYTHONUNBUFFERED=1
scripts=$gpu_dir/scripts
bin=$gpu_dir/bin

record() { # name status seconds note
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${4:-}" >>"$steps_tsv"
  echo ">>> [$1] $2 (${3}s) ${4:-}"
}

left() { echo $((budget - (SECONDS - t_start))); }

# step NAME CAP_SECONDS COMMAND...: runs COMMAND under a timeout of CAP or what is left of
# the stage budget (less a reserve for the summary), records the outcome. With STEP_LOG
# set, the command's output goes to that file instead of the terminal.
step() {
  local name=$1 cap=$2
  shift 2
  local avail=$(($(left) - 20))
  if ((avail < 15)); then
    record "$name" SKIPPED 0 "the stage's ${budget}s budget is spent"
    return 1
  fi
  local t=$((cap < avail ? cap : avail))
  echo
  echo "=== [$name] timeout ${t}s: $*"
  local s=$SECONDS rc
  if [ -n "${STEP_LOG:-}" ]; then
    timeout -k 10 "$t" "$@" >"$STEP_LOG" 2>&1
  else
    timeout -k 10 "$t" "$@"
  fi
  rc=$?
  local d=$((SECONDS - s))
  if ((rc == 0)); then
    record "$name" ok "$d"
  elif ((rc == 124 || rc == 137)); then
    record "$name" TIMEOUT "$d" "killed after ${t}s"
  else
    record "$name" FAILED "$d" "exit $rc"
  fi
  return "$rc"
}

# The folder with the most free space among the candidates.
work_dir() {
  if [ -n "${RILL_GPU_WORK:-}" ]; then
    echo "$RILL_GPU_WORK"
    return
  fi
  local best="" best_avail=-1 d a
  for d in /root /tmp "$root"; do
    if [ ! -d "$d" ] || [ ! -w "$d" ]; then
      continue
    fi
    a=$(df -Pk "$d" 2>/dev/null | awk 'NR == 2 {print $4}')
    if [ -n "$a" ] && ((a > best_avail)); then
      best=$d
      best_avail=$a
    fi
  done
  echo "${best:-/tmp}/rill-gpu-work"
}

# LD_LIBRARY_PATH and RILL_CUDA_INCLUDE for the CUDA 13 libraries rill opens at run time.
setup_cuda_env() {
  local dirs=() inc=() d
  while IFS= read -r d; do
    [ -n "$d" ] && dirs+=("$d")
  done < <("$PY" "$scripts/cuda_paths.py" libdirs)
  while IFS= read -r d; do
    [ -n "$d" ] && inc+=("$d")
  done < <("$PY" "$scripts/cuda_paths.py" includes)
  if ((${#dirs[@]} > 0)); then
    export LD_LIBRARY_PATH
    LD_LIBRARY_PATH="$(IFS=:; echo "${dirs[*]}")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
  if ((${#inc[@]} > 0)); then
    export RILL_CUDA_INCLUDE
    RILL_CUDA_INCLUDE=$(IFS=:; echo "${inc[*]}")
  fi
  echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
  echo "RILL_CUDA_INCLUDE=${RILL_CUDA_INCLUDE:-unset, rill uses its defaults}"
  local lib found
  for lib in libcuda.so.1 libnvrtc.so.13 libcublas.so.13 libcublasLt.so.13; do
    found=""
    for d in "${dirs[@]}"; do
      if [ -e "$d/$lib" ]; then
        found="$d/$lib"
        break
      fi
    done
    [ -z "$found" ] && found=$(ldconfig -p 2>/dev/null | awk -v l="$lib" '$1 == l {print $NF; exit}')
    echo "  $lib: ${found:-NOT FOUND}"
  done
}

machine_info() {
  echo "date: $(date -u +%FT%TZ)  kernel: $(uname -r)  budget: ${budget}s"
  nvidia-smi || return 1
  nvidia-smi --query-gpu=name,memory.total,memory.free,driver_version,clocks.max.sm --format=csv || true
  command -v nvcc >/dev/null && nvcc --version | tail -2
  command -v compute-sanitizer >/dev/null && compute-sanitizer --version | head -2
  "$PY" -c 'import torch, transformers, numpy, safetensors; print("python", __import__("sys").version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available(), "transformers", transformers.__version__, "numpy", numpy.__version__, "safetensors", safetensors.__version__)'
  df -h /root /tmp "$root" 2>/dev/null | sort -u
  free -g | head -2
  [ -f "$gpu_dir/MANIFEST" ] && cat "$gpu_dir/MANIFEST"
  local b
  for b in "$bin"/*; do
    echo "ldd $(basename "$b"):"
    ldd "$b" | sed 's/^/    /'
    if ldd "$b" | grep -q "not found"; then return 1; fi
  done
  return 0
}

# run_fn NAME FUNCTION: a quick function of this script (no timeout), recorded as a step.
run_fn() {
  local s=$SECONDS
  echo
  echo "=== [$1]"
  if "$2"; then
    record "$1" ok $((SECONDS - s))
  else
    record "$1" FAILED $((SECONDS - s)) "see the log"
  fi
}

# A test binary under RILL_GPU_TESTS=required; a missing binary is a failure.
gpu_test() { # name args...
  local name=$1
  shift
  if [ ! -x "$bin/$name" ]; then
    record "$name" MISSING 0 "$bin/$name was not packed (scripts/gpu/pack.sh)"
    return 1
  fi
  step "$name" "$STEP_CAP" env RILL_GPU_TESTS=required RILL_GPU_MODELS="$MODELS" \
    RILL_HF_REFERENCE="$REF" "$bin/$name" "$@"
}

# gpu_test_with STEP VAR=VALUE BINARY [FILTER...]: gpu_test under one more setting, as its
# own step.
gpu_test_with() {
  local step_name=$1 setting=$2 name=$3
  shift 3
  if [ ! -x "$bin/$name" ]; then
    record "$step_name" MISSING 0 "$bin/$name was not packed (scripts/gpu/pack.sh)"
    return 1
  fi
  step "$step_name" "$STEP_CAP" env "$setting" RILL_GPU_TESTS=required RILL_GPU_MODELS="$MODELS" \
    RILL_HF_REFERENCE="$REF" "$bin/$name" "$@"
}

# sanitize TOOL BINARY CAP [FILTER...]: compute-sanitizer on a test binary; "Device not
# supported" (or its error 999) is NOT-RUN.
sanitize() {
  local tool=$1 name=$2 cap=$3
  shift 3
  local step_name="sanitizer-$tool-$name${1:+-$1}"
  if ! command -v compute-sanitizer >/dev/null; then
    record "$step_name" NOT-RUN 0 "compute-sanitizer is not installed"
    return 0
  fi
  if [ ! -x "$bin/$name" ]; then
    record "$step_name" MISSING 0 "$bin/$name was not packed"
    return 1
  fi
  local tmp
  tmp=$(mktemp)
  STEP_LOG=$tmp step "$step_name" "$cap" env RILL_GPU_TESTS=required RILL_GPU_MODELS="$MODELS" \
    RILL_HF_REFERENCE="$REF" compute-sanitizer --tool "$tool" --print-limit 50 \
    --error-exitcode 99 "$bin/$name" "$@"
  local rc=$?
  {
    echo "===== compute-sanitizer --tool $tool $name $* (exit $rc) ====="
    cat "$tmp"
  } >>"$OUT/sanitizer.log"
  grep -E "ERROR SUMMARY|Device not supported|error 999|passed;|NOT RUN" "$tmp" | head -20
  tail -n 3 "$tmp"
  if grep -qiE "Device not supported|unable to initialize|error 999" "$tmp"; then
    # Replace the step's FAILED line: the sanitizer could not run here.
    sed -i '$d' "$steps_tsv"
    record "$step_name" NOT-RUN 0 "compute-sanitizer refused the device (Device not supported: a gVisor machine?)"
    echo "!!! compute-sanitizer cannot run on this machine: $tool NOT RUN (not a pass)"
    rc=0
  fi
  rm -f "$tmp"
  return "$rc"
}

stage_check() {
  local only=${1:-all}
  run_fn info machine_info
  step make-tiny-models 120 "$PY" "$scripts/make_models.py" --out "$MODELS" \
    --tokenizers "$gpu_dir/tokenizers" --models qwen3-tiny,llama-tiny
  step hf-reference 180 "$PY" "$scripts/hf_reference.py" --models "$MODELS" --out "$REF" \
    --names qwen3-tiny,llama-tiny
  local engine_ok=0
  if [ "$only" != sanitizer ]; then
    STEP_CAP=150 gpu_test cuda_kernels
    STEP_CAP=240 gpu_test cuda_engine
    engine_ok=$?
    # Both decode matmul paths end to end (the default picks one per shape by timing):
    # greedy tokens equal to the CPU's with cuBLAS only, and with the GEMV kernel forced.
    STEP_CAP=90 gpu_test_with cuda_engine-gemv-off RILL_CUDA_GEMV=off cuda_engine greedy_
    STEP_CAP=90 gpu_test_with cuda_engine-gemv-on RILL_CUDA_GEMV=on cuda_engine greedy_
  fi
  sanitize memcheck cuda_kernels 150
  sanitize memcheck cuda_engine 150 logits_
  sanitize racecheck cuda_kernels 90
  sanitize synccheck cuda_kernels 60
  sanitize initcheck cuda_kernels 60
  if ((engine_ok != 0)) && [ -x "$bin/cuda_engine" ]; then
    # Triage: the same checks on the CPU alone (is the reference, or the test, at fault?).
    step cuda_engine-cpu-reference-check 180 env RILL_GPU_MODELS="$MODELS" \
      RILL_HF_REFERENCE="$REF" "$bin/cuda_engine" --cpu-reference-check
  fi
  return 0
}

bench_model() {
  local model=$1 cap_make=$2 cap_rill=$3
  step "make-$model" "$cap_make" "$PY" "$scripts/make_models.py" --out "$MODELS" \
    --tokenizers "$gpu_dir/tokenizers" --models "$model" || return 1
  if [ ! -x "$bin/rill-bench" ]; then
    record "rill-bench-$model" MISSING 0 "$bin/rill-bench was not packed"
    return 1
  fi
  # The engine sizes its GPU KV cache itself (max_num_seqs x max_model_len, i.e. 256 x
  # 1280 tokens here, capped at 90% of the free memory) and defaults to 8192 tokens per
  # step on a GPU; random weights write no markers, so the parsers are off.
  local extra='{"reasoning_parser": "none", "tool_call_parser": "none"}'
  step "rill-bench-$model" "$cap_rill" "$bin/rill-bench" --model "$MODELS/$model" --device cuda \
    --threads 8 --engine-config "$extra" --levels 1,16,64,256 --level-prompt-tokens 1000 \
    --gen-tokens 200 --prompt-tokens 1000 --runs 3 --prefix-requests 8 --ctx-per-slot 1280 \
    --timeout-s 120 --json "$OUT/rill-bench-$model.json"
}

stage_bench() {
  local models=("$@")
  if ((${#models[@]} != 1)); then
    # Both models' steps (rill-bench and transformers) do not fit one 10-minute call.
    record bench FAILED 0 "name one model per call: bench qwen3-0.6b, or bench llama3-8b"
    return 0
  fi
  step info 30 bash -c 'nvidia-smi --query-gpu=name,memory.total,memory.free,driver_version --format=csv; free -g | head -2; df -h /root /tmp | sort -u'
  local m
  for m in "${models[@]}"; do
    case "$m" in
      qwen3-0.6b) bench_model "$m" 90 150 ;;
      llama3-8b) bench_model "$m" 200 200 ;;
      *) record "bench-$m" FAILED 0 "unknown model (qwen3-0.6b, llama3-8b)" ;;
    esac
  done
  # The baselines after every rill run: rill's numbers matter more when time runs short.
  for m in "${models[@]}"; do
    [ -f "$MODELS/$m/rill_model.json" ] || continue
    local cap=100
    [ "$m" = llama3-8b ] && cap=170
    step "hf-baseline-$m" "$cap" "$PY" "$scripts/hf_baseline.py" --model "$MODELS/$m" \
      --out "$OUT/hf-$m.json" --prompt-tokens 1000 --gen-tokens 200 --levels 1,16,64,256 \
      --budget-s $((cap - 40))
  done
  # Last, while time is left: where a decode step's GPU time goes, per kernel.
  for m in "${models[@]}"; do
    [ -f "$MODELS/$m/rill_model.json" ] && profile_model "$m"
  done
  return 0
}

# profile_model MODEL: Nsight Compute's duration of every kernel (ours and cuBLAS's, graph
# nodes included) over a short single-stream run (a 64-token prompt, 32 decoded tokens),
# summarized per kernel name into ncu-MODEL.csv: calls and mean/min/max time. Clocks and
# caches are left alone (--clock-control none --cache-control none), so the times are the
# kernels' as they run in the engine, one at a time.
profile_model() {
  local model=$1 ncu
  ncu=$(command -v ncu)
  local c
  for c in /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu; do
    [ -z "$ncu" ] && [ -x "$c" ] && ncu=$c
  done
  if [ -z "$ncu" ]; then
    record "ncu-$model" MISSING 0 "ncu not found"
    return 0
  fi
  local extra='{"reasoning_parser": "none", "tool_call_parser": "none", "max_num_seqs": 4}'
  step "ncu-$model" 120 "$ncu" --clock-control none --cache-control none \
    --metrics gpu__time_duration.sum --print-summary per-kernel --csv --launch-count 12000 \
    --log-file "$OUT/ncu-$model.csv" "$bin/rill-bench" --model "$MODELS/$model" --device cuda \
    --threads 8 --engine-config "$extra" --levels none --prefix-requests 0 --runs 1 \
    --prompt-tokens 64 --gen-tokens 32 --bandwidth-mib 0 --timeout-s 100
}

main() {
  echo "run_all.sh $stage $* (repo $root, OUT $OUT, python $PY)"
  if [ ! -d "$bin" ]; then
    record pack MISSING 0 "$gpu_dir/bin is missing: run scripts/gpu/pack.sh and carry .gpu"
  fi
  WORK=$(work_dir)
  MODELS=$WORK/models
  REF=$WORK/hf-reference
  mkdir -p "$MODELS" "$REF"
  echo "work dir: $WORK"
  setup_cuda_env
  export RILL_CACHE=$WORK/rill-cache
  "stage_$stage" "$@"
  echo
  "$PY" "$scripts/summarize.py" "$stage" "$steps_tsv" "$OUT/results-$stage.json" "$OUT"
  if awk -F'\t' '$2 == "FAILED" || $2 == "TIMEOUT" || $2 == "MISSING" {bad = 1} END {exit !bad}' "$steps_tsv"; then
    echo "run_all.sh $stage: FAILED (see above; $OUT/$stage.log)"
    return 1
  fi
  echo "run_all.sh $stage: every step passed or was not run"
  return 0
}

main "$@" 2>&1 | tee "$OUT/$stage.log"
rc=${PIPESTATUS[0]}
rm -f "$steps_tsv"
exit "$rc"
