#!/usr/bin/env python3
"""The short tables scripts/gpu/run_all.sh prints last, and its results JSON.

    python3 scripts/gpu/summarize.py check STEPS_TSV OUT_JSON
    python3 scripts/gpu/summarize.py bench STEPS_TSV OUT_JSON BENCH_DIR

STEPS_TSV: one line per step, "name<TAB>status<TAB>seconds<TAB>note" (status ok, FAILED,
TIMEOUT, MISSING, SKIPPED or NOT-RUN). bench also reads BENCH_DIR/rill-bench-<model>.json
(rill-bench --json) and BENCH_DIR/hf-<model>.json (hf_baseline.py) for the models
qwen3-0.6b and llama3-8b, and prints one table per model (rill beside transformers) and
the issue's targets. OUT_JSON gets {"stage", "steps": [...], "failed": [...],
"not_run": [...], "bench": {model: {...}} (bench only), "targets": [...]}.
Exit status 0; run_all.sh decides its own.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

BAD = ("FAILED", "TIMEOUT", "MISSING")
MODELS = ("qwen3-0.6b", "llama3-8b")
LEVELS = (1, 16, 64, 256)


def read_steps(path: Path) -> list[dict]:
    steps = []
    if path.is_file():
        for line in path.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 3:
                steps.append({"name": parts[0], "status": parts[1], "seconds": int(parts[2] or 0),
                              "note": parts[3] if len(parts) > 3 else ""})
    return steps


def load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def fmt(x, prec: int = 1) -> str:
    return "-" if not isinstance(x, (int, float)) else f"{x:.{prec}f}"


def level_of(levels, n: int) -> dict:
    return next((lvl for lvl in levels or [] if lvl.get("streams") == n), {})


def bench_model(bench_dir: Path, model: str) -> dict | None:
    rill = load(bench_dir / f"rill-bench-{model}.json")
    hf = load(bench_dir / f"hf-{model}.json")
    if rill is None and hf is None:
        return None
    r = (rill or {}).get("backends", {}).get("rill", {})
    gpu = (rill or {}).get("gpu", {})
    roof = gpu.get("roofline", {})
    out = {
        "gpu": gpu.get("name") or (hf or {}).get("gpu"),
        "device": gpu.get("device"),
        "copy_bandwidth_GBps": (gpu.get("copy_bandwidth") or {}).get("bytes_per_s", 0) / 1e9 or None,
        "weight_bytes_per_token": roof.get("weight_bytes_per_token"),
        "limit_tokens_per_s": roof.get("limit_tokens_per_s"),
        "fraction_of_limit": roof.get("fraction_of_limit"),
        "rill_partial": (rill or {}).get("partial"),
        "rill_errors": (rill or {}).get("errors"),
        "hf_errors": (hf or {}).get("errors"),
        "decode": {"rill": (r.get("decode") or {}).get("tokens_per_s"),
                   "transformers": ((hf or {}).get("decode") or {}).get("tokens_per_s")},
        "prefill": {"rill": (r.get("prefill") or {}).get("tokens_per_s"),
                    "transformers": ((hf or {}).get("prefill") or {}).get("tokens_per_s")},
        "levels": {},
    }
    for n in LEVELS:
        rl = level_of(r.get("concurrency"), n)
        hl = level_of((hf or {}).get("concurrency"), n)
        out["levels"][n] = {
            "rill": {"tokens_per_s": rl.get("aggregate_tokens_per_s"),
                     "ttft_p50_ms": (rl.get("ttft") or {}).get("p50_ms"),
                     "itl_p50_ms": (rl.get("itl") or {}).get("p50_ms"),
                     "error": rl.get("error")},
            "transformers": {"tokens_per_s": hl.get("aggregate_tokens_per_s"),
                             "ttft_p50_ms": hl.get("ttft_ms"),
                             "itl_p50_ms": hl.get("itl_mean_ms"),
                             "error": hl.get("error")},
        }
    return out


def print_bench(model: str, b: dict) -> None:
    print(f"\n{model} on {b['gpu'] or '?'} (copy bandwidth {fmt(b['copy_bandwidth_GBps'])} GB/s, "
          f"weights/token {fmt((b['weight_bytes_per_token'] or 0) / 1e9, 3)} GB)")
    print("| metric | rill | transformers |\n|---|---|---|")
    frac, limit = b["fraction_of_limit"], fmt(b["limit_tokens_per_s"])
    roof = "" if frac is None else f" ({100 * frac:.1f}% of the {limit} tok/s limit)"
    print(f"| decode 1 stream, tok/s | {fmt(b['decode']['rill'])}{roof} | "
          f"{fmt(b['decode']['transformers'])} |")
    print(f"| prefill 1000 tok, tok/s | {fmt(b['prefill']['rill'])} | {fmt(b['prefill']['transformers'])} |")
    for n in LEVELS:
        lv = b["levels"][n]

        def cell(x: dict, key: str, prec: int = 1) -> str:
            if x.get("error") and x.get("tokens_per_s") is None:
                return str(x["error"])[:40]
            return fmt(x.get(key), prec)

        print(f"| @{n}: output tok/s | {cell(lv['rill'], 'tokens_per_s')} | "
              f"{cell(lv['transformers'], 'tokens_per_s')} |")
        print(f"| @{n}: TTFT p50 / ITL p50 (tf: mean), ms | {cell(lv['rill'], 'ttft_p50_ms')} / "
              f"{cell(lv['rill'], 'itl_p50_ms', 2)} | {cell(lv['transformers'], 'ttft_p50_ms')} / "
              f"{cell(lv['transformers'], 'itl_p50_ms', 2)} |")
    for k in ("rill_errors", "hf_errors"):
        if b.get(k):
            print(f"{k}: {b[k]}")
    if b.get("rill_partial"):
        print("rill-bench JSON is partial: the run was cut short")


def targets(bench: dict) -> list[dict]:
    out = []
    b8, b06 = bench.get("llama3-8b"), bench.get("qwen3-0.6b")

    def verdict(value, goal) -> str:
        return "not measured" if value is None else ("met" if value >= goal else "MISSED")

    frac = (b8 or {}).get("fraction_of_limit")
    out.append({"target": "8B single-stream decode >= 75% of the bandwidth limit",
                "measured": None if frac is None else f"{100 * frac:.1f}%",
                "verdict": verdict(frac, 0.75)})
    d06 = ((b06 or {}).get("decode") or {}).get("rill")
    out.append({"target": "0.6B single-stream decode >= 1000 tok/s",
                "measured": None if d06 is None else f"{d06:.1f} tok/s",
                "verdict": verdict(d06, 1000.0)})
    a256 = (((b8 or {}).get("levels") or {}).get(256) or {}).get("rill", {}).get("tokens_per_s")
    gpu = (b8 or {}).get("gpu") or "?"
    out.append({"target": f"8B at 256 concurrent >= 5000 output tok/s (on an H100; ran on {gpu})",
                "measured": None if a256 is None else f"{a256:.1f} tok/s",
                "verdict": verdict(a256, 5000.0)})
    return out


def main() -> None:
    stage, steps_tsv, out_json = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    steps = read_steps(steps_tsv)
    doc: dict = {"stage": stage, "steps": steps,
                 "failed": [s["name"] for s in steps if s["status"] in BAD],
                 "not_run": [s["name"] for s in steps if s["status"] in ("NOT-RUN", "SKIPPED")]}
    if stage == "bench":
        bench_dir = Path(sys.argv[4])
        bench = {m: b for m in MODELS if (b := bench_model(bench_dir, m)) is not None}
        doc["bench"] = bench
        doc["targets"] = targets(bench)
        for m, b in bench.items():
            print_bench(m, b)
        print("\n| target | measured | verdict |\n|---|---|---|")
        for t in doc["targets"]:
            print(f"| {t['target']} | {t['measured'] or '-'} | {t['verdict']} |")
    out_json.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\n{stage} steps:")
    print("| step | status | s | note |\n|---|---|---|---|")
    for s in steps:
        print(f"| {s['name']} | {s['status']} | {s['seconds']} | {s['note']} |")
    for s in steps:
        if s["status"] == "NOT-RUN":
            print(f"!!! {s['name']}: NOT RUN ({s['note']}): this is not a pass")
    print(f"{stage}: {sum(s['status'] == 'ok' for s in steps)} ok, {len(doc['failed'])} failed, "
          f"{len(doc['not_run'])} not run")


if __name__ == "__main__":
    main()
