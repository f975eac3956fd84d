#!/usr/bin/env python3
"""The rill-bench GPU workload through plain transformers: the baseline column.

    python3 scripts/gpu/hf_baseline.py --model DIR --out JSON [--prompt-tokens 1000]
        [--gen-tokens 200] [--levels 1,16,64,256] [--device auto] [--budget-s 240]

The model (a make_models.py directory) in bfloat16 with sdpa attention, under
torch.inference_mode, generate() with its default (dynamic) KV cache, greedy, end of
sequence ignored (min_new_tokens = max_new_tokens). Prompts are --prompt-tokens seeded
random token ids (ids 1000..100000, one distinct row per request, no padding: every row
has the same length). Per level N (a static batch of N requests, all started together):

  TTFT         wall time of generate(max_new_tokens=1) on the batch (prefill + 1 token)
  total        wall time of generate(max_new_tokens=G, min_new_tokens=G) on the batch
  output tok/s N * G / total
  ITL (mean)   (total - TTFT) / (G - 1): the mean time per decode step (every request
               gets one token per step)
  decode tok/s (G - 1) / (total - TTFT) per request; the single-stream decode row is
               level 1's (batch 1, a --prompt-tokens prompt, G new tokens)

A level that runs out of GPU memory is recorded ("error": "out of memory: ...") and the
larger ones are skipped; so are levels that would start after --budget-s seconds. Timing
uses torch.cuda.synchronize() and a host clock around each call (one run per level after a
warm-up: the numbers are seconds long, so launch noise is small against them).

Output JSON (what rill-bench --baseline-json reads):
  {"tool": "transformers", "model", "device", "gpu", "torch", "transformers",
   "dtype": "bfloat16", "attn_implementation": "sdpa", "cache": "dynamic",
   "prompt_tokens", "gen_tokens",
   "prefill": {"prompt_tokens", "ttft_ms", "tokens_per_s"} (level 1) or null,
   "decode": {"prompt_tokens", "output_tokens", "tokens_per_s"} (level 1) or null,
   "concurrency": [{"streams", "input_tokens", "output_tokens", "wall_s",
                    "aggregate_tokens_per_s", "ttft_ms", "itl_mean_ms",
                    "decode_tokens_per_s", "error"}],
   "errors": [...], "seconds"}
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def log(msg: str) -> None:
    print(f"hf_baseline: {msg}", file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--prompt-tokens", type=int, default=1000)
    ap.add_argument("--gen-tokens", type=int, default=200)
    ap.add_argument("--levels", default="1,16,64,256")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--budget-s", type=float, default=240.0,
                    help="start no level after this many seconds")
    a = ap.parse_args()
    if a.gen_tokens < 2:
        raise SystemExit("hf_baseline: --gen-tokens must be at least 2")
    levels = [int(x) for x in a.levels.split(",") if x]

    t_start = time.time()
    import torch  # noqa: PLC0415
    import transformers  # noqa: PLC0415
    from transformers import AutoModelForCausalLM, GenerationConfig  # noqa: PLC0415

    device = a.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    cuda = device.startswith("cuda")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    doc: dict = {
        "tool": "transformers", "model": str(a.model), "device": device,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "torch": torch.__version__, "transformers": transformers.__version__,
        "dtype": "bfloat16", "attn_implementation": "sdpa", "cache": "dynamic",
        "prompt_tokens": a.prompt_tokens, "gen_tokens": a.gen_tokens,
        "prefill": None, "decode": None, "concurrency": [], "errors": [],
    }

    def save() -> None:
        doc["seconds"] = round(time.time() - t_start, 2)
        a.out.write_text(json.dumps(doc, indent=2) + "\n")

    model = AutoModelForCausalLM.from_pretrained(
        str(a.model), dtype=torch.bfloat16, attn_implementation="sdpa").to(device).eval()
    cfg = json.loads((a.model / "config.json").read_text())
    eos = cfg.get("eos_token_id")
    pad = eos[0] if isinstance(eos, list) else eos

    def gen_config(n: int) -> GenerationConfig:
        return GenerationConfig(max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                eos_token_id=eos, pad_token_id=pad)

    # Replace the checkpoint's sampling defaults: every call passes a full greedy config.
    model.generation_config = gen_config(1)
    log(f"loaded {a.model} on {device} in {time.time() - t_start:.1f} s")
    rng = np.random.default_rng(1234)

    def batch(n: int, length: int):
        ids = torch.tensor(rng.integers(1000, 100000, size=(n, length)), device=device)
        return ids, torch.ones_like(ids)

    def timed_generate(ids, mask, n: int) -> tuple[float, int]:
        sync()
        t0 = time.perf_counter()
        out = model.generate(input_ids=ids, attention_mask=mask, generation_config=gen_config(n))
        sync()
        return time.perf_counter() - t0, int(out.shape[1] - ids.shape[1])

    with torch.inference_mode():
        ids, mask = batch(1, 16)
        timed_generate(ids, mask, 4)  # warm-up: cuBLAS handles, sdpa kernels
        stop_reason = None
        for n in levels:
            entry = {"streams": n, "input_tokens": n * a.prompt_tokens, "output_tokens": None,
                     "wall_s": None, "aggregate_tokens_per_s": None, "ttft_ms": None,
                     "itl_mean_ms": None, "decode_tokens_per_s": None, "error": None}
            doc["concurrency"].append(entry)
            if stop_reason is None and time.time() - t_start > a.budget_s:
                stop_reason = f"skipped: past the {a.budget_s:.0f} s budget"
            if stop_reason is not None:
                entry["error"] = stop_reason
                continue
            try:
                ids, mask = batch(n, a.prompt_tokens)
                ttft, n1 = timed_generate(ids, mask, 1)
                total, ng = timed_generate(ids, mask, a.gen_tokens)
            except torch.OutOfMemoryError as e:
                entry["error"] = f"out of memory: {str(e).splitlines()[0]}"
                stop_reason = f"skipped after out of memory at {n} streams"
                doc["errors"].append(f"{n} streams: {entry['error']}")
                log(f"{n} streams: {entry['error']}")
                ids = mask = None
                if cuda:
                    torch.cuda.empty_cache()
                save()
                continue
            if n1 != 1 or ng != a.gen_tokens:
                entry["error"] = f"generated {n1} / {ng} tokens, expected 1 / {a.gen_tokens}"
                doc["errors"].append(f"{n} streams: {entry['error']}")
            decode_s = max(total - ttft, 1e-9)
            entry.update(output_tokens=n * ng, wall_s=total,
                         aggregate_tokens_per_s=n * ng / total, ttft_ms=ttft * 1e3,
                         itl_mean_ms=decode_s / (a.gen_tokens - 1) * 1e3,
                         decode_tokens_per_s=(a.gen_tokens - 1) / decode_s)
            if n == 1:
                doc["prefill"] = {"prompt_tokens": a.prompt_tokens, "ttft_ms": ttft * 1e3,
                                  "tokens_per_s": a.prompt_tokens / ttft}
                doc["decode"] = {"prompt_tokens": a.prompt_tokens, "output_tokens": ng,
                                 "tokens_per_s": entry["decode_tokens_per_s"]}
            log(f"{n} streams: {entry['aggregate_tokens_per_s']:.1f} output tok/s, TTFT "
                f"{entry['ttft_ms']:.1f} ms, ITL {entry['itl_mean_ms']:.2f} ms")
            save()
    save()
    log(f"wrote {a.out}")


if __name__ == "__main__":
    main()
