#!/usr/bin/env python3
"""Reference greedy tokens and logits from transformers, for tests/cuda_engine.rs.

    python3 scripts/gpu/hf_reference.py --models DIR --out REFDIR \
        [--names qwen3-tiny,llama-tiny] [--steps 32] [--device auto|cuda|cpu] [--no-f32]

For each model DIR/<name> (written by scripts/gpu/make_models.py) and each fixed prompt
below, tokenized with the model's own tokenizer.json (the `tokenizers` package, special
tokens as the file's post-processor adds them: Llama 3 gets <|begin_of_text|>, Qwen3
nothing), runs transformers (sdpa attention, torch.inference_mode):

  bf16: the model in bfloat16, greedy decoding by hand for --steps tokens (a prefill of the
        prompt, then one token at a time with the KV cache; argmax of the raw logits, no
        logits processors and no end-of-sequence stop, as rill's `ignore_eos` greedy);
        the logits of every step are kept (as float32 copies of the bf16 outputs).
  f32:  the same weights upcast to float32 (exact), TF32 off, teacher-forced in one
        forward pass along the bf16 greedy tokens: the more precise reference.

Output (REFDIR/<name>/, the directory tests/cuda_engine.rs reads from $RILL_HF_REFERENCE):

  reference.json   {"format": 1, "model": name, "model_dir", "vocab_size", "steps",
                    "device", "torch", "transformers", "attn_implementation": "sdpa",
                    "prompts": [{"name", "text", "prompt_ids": [...],
                       "greedy_ids": [steps ids, bf16 greedy],
                       "bf16_logits": "<prompt name>.bf16.f32",
                       "f32_logits": "<prompt name>.f32.f32" or null (--no-f32),
                       "f32_argmax": [steps ids] or null,
                       "bf16_margin": [steps: top-1 minus top-2 logit, bf16],
                       "f32_margin": [steps] or null,
                       "bf16_vs_f32_rel_err": [steps: ||bf16 - f32|| / ||f32|| per row] or null}]}
  *.f32            raw little-endian float32, shape [steps, vocab_size], row-major: row i
                   holds the logits after the prompt and greedy_ids[:i], i.e. the
                   distribution that greedy_ids[i] was drawn from (its argmax, bf16).

Everything for one model is written to REFDIR/<name>.tmp and renamed into place at the
end, so a directory that exists is complete.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

PARAGRAPH = (
    "The river ran past the old mill, where the miller counted sacks of grain and wrote the "
    "numbers in a ledger: 12, 31, 7, 1024. Children played by the water; one of them asked "
    "why the wheel turned slower in August. ")

PROMPTS = [
    ("short", "Hello, my name is"),
    ("code", "def fib(n: int) -> int:\n    a, b = 0, 1\n    for _ in range(n):\n"
             "        a, b = b, a + b\n    return a\n\n# café, naïve, 東京, 42\nprint(fib("),
    ("long", " ".join(f"[{i}] {PARAGRAPH}" for i in range(8))),
    ("longer", " ".join(f"({i}) {PARAGRAPH}" for i in range(22))),
]


def log(msg: str) -> None:
    print(f"hf_reference: {msg}", file=sys.stderr, flush=True)


def top2_margin(row: np.ndarray) -> float:
    a = np.partition(row, -2)[-2:]
    return float(a.max() - a.min())


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a.astype(np.float64) - b) / max(np.linalg.norm(b.astype(np.float64)), 1e-30))


def greedy_bf16(model, torch, ids: list[int], steps: int, device: str):
    """Greedy by hand: prefill, then one token at a time with the cache. Returns the ids
    and a [steps, vocab] float32 array of the raw logits of every step."""
    x = torch.tensor([ids], device=device)
    out = model(input_ids=x, use_cache=True)
    past = out.past_key_values
    logits = out.logits[0, -1].float()
    rows, toks = [], []
    for i in range(steps):
        rows.append(logits.cpu().numpy())
        t = int(torch.argmax(logits))
        toks.append(t)
        if i + 1 == steps:
            break
        out = model(input_ids=torch.tensor([[t]], device=device), past_key_values=past, use_cache=True)
        past = out.past_key_values
        logits = out.logits[0, -1].float()
    return toks, np.stack(rows).astype(np.float32)


def teacher_forced(model, torch, ids: list[int], greedy: list[int], device: str) -> np.ndarray:
    seq = ids + greedy[:-1]
    out = model(input_ids=torch.tensor([seq], device=device), use_cache=False)
    return out.logits[0, len(ids) - 1:].float().cpu().numpy().astype(np.float32)


def load(torch, transformers, d: Path, dtype, device: str):
    m = transformers.AutoModelForCausalLM.from_pretrained(
        str(d), dtype=dtype, attn_implementation="sdpa")
    return m.to(device).eval()


def run_model(name: str, models: Path, out: Path, steps: int, device: str, f32: bool) -> dict:
    import torch  # noqa: PLC0415
    import transformers  # noqa: PLC0415
    from tokenizers import Tokenizer  # noqa: PLC0415

    d = models / name
    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    vocab = json.loads((d / "config.json").read_text())["vocab_size"]
    tmp = out / (name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    t0 = time.time()
    prompts = []
    with torch.inference_mode():
        model = load(torch, transformers, d, torch.bfloat16, device)
        for pname, text in PROMPTS:
            ids = tok.encode(text).ids
            greedy, logits = greedy_bf16(model, torch, ids, steps, device)
            assert logits.shape == (steps, vocab), logits.shape
            logits.tofile(tmp / f"{pname}.bf16.f32")
            prompts.append({"name": pname, "text": text, "prompt_ids": ids, "greedy_ids": greedy,
                            "bf16_logits": f"{pname}.bf16.f32",
                            "bf16_margin": [top2_margin(r) for r in logits],
                            "f32_logits": None, "f32_argmax": None, "f32_margin": None,
                            "bf16_vs_f32_rel_err": None})
            log(f"{name}/{pname}: {len(ids)} prompt tokens, greedy {greedy[:8]}...")
        del model
        if f32:
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
            torch.set_float32_matmul_precision("highest")
            model = load(torch, transformers, d, torch.float32, device)
            for p in prompts:
                ref = teacher_forced(model, torch, p["prompt_ids"], p["greedy_ids"], device)
                assert ref.shape == (steps, vocab), ref.shape
                ref.tofile(tmp / f"{p['name']}.f32.f32")
                bf = np.fromfile(tmp / p["bf16_logits"], dtype="<f4").reshape(steps, vocab)
                p.update(f32_logits=f"{p['name']}.f32.f32",
                         f32_argmax=[int(a) for a in ref.argmax(axis=1)],
                         f32_margin=[top2_margin(r) for r in ref],
                         bf16_vs_f32_rel_err=[rel_err(b, r) for b, r in zip(bf, ref)])
                agree = sum(a == g for a, g in zip(p["f32_argmax"], p["greedy_ids"]))
                log(f"{name}/{p['name']}: bf16 vs f32 max rel err "
                    f"{max(p['bf16_vs_f32_rel_err']):.2e}, argmax agree {agree}/{steps}, "
                    f"min f32 margin {min(p['f32_margin']):.3f}")
            del model
    doc = {"format": 1, "model": name, "model_dir": str(d), "vocab_size": vocab, "steps": steps,
           "device": device, "torch": torch.__version__, "transformers": transformers.__version__,
           "attn_implementation": "sdpa", "seconds": round(time.time() - t0, 2), "prompts": prompts}
    (tmp / "reference.json").write_text(json.dumps(doc, indent=1) + "\n")
    final = out / name
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return doc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", required=True, type=Path, help="make_models.py's --out")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--names", default="qwen3-tiny,llama-tiny")
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--no-f32", action="store_true", help="skip the float32 reference")
    a = ap.parse_args()
    import torch  # noqa: PLC0415

    device = a.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    a.out.mkdir(parents=True, exist_ok=True)
    for name in [n for n in a.names.split(",") if n]:
        doc = run_model(name, a.models, a.out, a.steps, device, not a.no_f32)
        log(f"{name}: done in {doc['seconds']} s on {device}")
    print(a.out)


if __name__ == "__main__":
    main()
