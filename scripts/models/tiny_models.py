#!/usr/bin/env python3
"""Seeded tiny models (random weights, the real Qwen3 tokenizer) for the model tests, and
llama.cpp's logits on them.

    python3 scripts/models/tiny_models.py --tokenizer DIR/qwen3 [--out DIR]

Normally run through scripts/tiny_models.sh, which caches the result under
${RILL_CACHE:-~/.cache/rill}/tiny-models/v3/ and prints that directory. The script builds
everything in a sibling temporary directory and renames it into place at the end, so an
interrupted run never leaves a half-written cache. Same seeds, same numpy -> same weights
(the weights do not depend on llama.cpp; the quantized files and the reference logits come
from llama-cpp-python 0.3.36 = llama.cpp 0c1e57098).

Architectures (hidden 256, 2 layers, vocab 151669 = the Qwen3 tokenizer's, SiLU MLP):

    name   HF class          heads kv head_dim ffn  tied  extras
    llama  LlamaForCausalLM  4     1  64(*)    512  no    rope_theta 5e5, Llama-3 rope_scaling
                                                          (factor 8, low 1, high 4, original
                                                          256: rope_freqs.weight in GGUF),
                                                          rms eps 1e-5, Q/K permuted in GGUF
    qwen2  Qwen2ForCausalLM  4     2  64(*)    512  yes   q/k/v bias (random, non-zero),
                                                          rope_theta 1e6, rms eps 1e-6
    qwen3  Qwen3ForCausalLM  4     2  128      768  yes   head_dim set explicitly
                                                          (4*128 = 512 != 256), per-head
                                                          q_norm/k_norm, rope_theta 1e6, eps 1e-6
    (*) not in config.json: hidden_size / num_attention_heads.

Weights: linear weights N(0, 1/fan_in) (std 1/sqrt(fan_in)), except o_proj and down_proj
with std out_gain/sqrt(fan_in), out_gain 2 (1.5 for qwen2, whose Q/K/V biases make it
more fragile) (the attention and MLP outputs move the residual stream without
burying the input embedding); embeddings N(0,1); RMSNorm weights (incl. q_norm/k_norm)
1 + 0.1 N(0,1); qwen2 biases 0.5 N(0,1). The untied output (llama's lm_head) is the
embedding matrix with its rows permuted (a seeded permutation), so its top-1 is a token
other than the input (a model that used the tied embedding by mistake would fail) and the
top1-top2 margins are wide. Why wide margins matter: with quantized activations (Q8_0,
Q8_K, bf16) a random model's logits move by ~1 logit under any perturbation (llama.cpp's
own logits move that much when only its KV cache goes from f16 to f32), so a model whose
top-1 is decided by random near-ties (heavy-tailed output rows, tried in v2) cannot tell
a bug from rounding: llama.cpp then disagrees with itself on 2-4% of positions. The
generator checks this: every type's llama.cpp logits are computed with an f16 and an f32
KV cache, their top-1 must agree at >= 99.5% of positions, and the relative difference at
the full-row positions is stored as that type's noise floor (kv_f32 in <T>.json). Seed per
arch: numpy default_rng(SEEDS[arch]), tensors drawn in HF order (the permutation last).
Every weight is then rounded to the nearest bf16 value (kept as f32), so the f32 files, hf-bf16/ and
BF16.gguf hold exactly the same numbers (F16.gguf too, except values below f16's normal
range); BF16/F16 files differ from F32 only in how the engine computes.

Output layout (DIR = .../tiny-models/v3):

    DIR/manifest.json                 everything below, machine-readable (keys listed below)
    DIR/<arch>/hf/                    config.json, generation_config.json, model.safetensors
                                      (all f32, HF tensor names), tokenizer.json,
                                      tokenizer_config.json (Qwen3's, chat template inside)
    DIR/<arch>/hf-sharded/            the same f32 weights in model-00001-of-00002.safetensors
                                      (embeddings + layer 0) and model-00002-of-00002
                                      (the rest) + model.safetensors.index.json; same config
                                      and tokenizer files
    DIR/<arch>/hf-bf16/               the same weights rounded to bf16 (round to nearest
                                      even) in model.safetensors; config torch_dtype bfloat16
    DIR/<arch>/gguf/<T>.gguf          T in TYPES below. F32.gguf is written by gguf-py with
                                      convert_hf_to_gguf.py's names and metadata; every other
                                      file is llama.cpp's llama_model_quantize(F32.gguf, ftype)
                                      with default params (so llama.cpp's own choice of
                                      per-tensor types: see manifest tensor_types)
    DIR/<arch>/reference/tokens.json  {"text", "ids": [N ids, Qwen3 tokenizer, no BOS],
                                      "full_positions": [8 positions], "llama_cpp_ids_match"}
    DIR/<arch>/reference/<T>.json     llama.cpp teacher-forced on ids (one eval of all N
                                      tokens, logits_all): {"file", "top1": [N], "margin": [N]
                                      (logit[top1] - logit[top2]), "topk_ids": [N][8],
                                      "topk_logits": [N][8], "full_positions": [...],
                                      "logits_file": "<T>.logits.f32", "n_vocab"}
                                      Row i = logits predicting token i+1 (the output at
                                      position i).
    DIR/<arch>/reference/<T>.logits.f32
                                      raw little-endian f32, shape [len(full_positions),
                                      n_vocab], row r = full logits at position full_positions[r]
                                      <T>.json also has "kv_f32": {"top1_agree",
                                      "rel_err_full"}: llama.cpp with an F32 KV cache vs its
                                      default F16 one (the references use F16, as rill does):
                                      top-1 agreement over all positions, and
                                      max |diff| / max |ref| over the full rows (the noise
                                      floor of that type)

TYPES = F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K Q4_K_M, where Q2_K
is ftype MOSTLY_Q2_K, Q3_K is MOSTLY_Q3_K_S, Q4_K is MOSTLY_Q4_K_S, Q5_K is MOSTLY_Q5_K_S.

manifest.json: {"version", "generator", "llama_cpp": {settings}, "types": {T: llama ftype},
"vocab_size", "tokens": {"n", "full_positions"}, "seconds", "archs": {arch: {
    "config": the HF config.json (f32), "seed", "tensors": {HF name: {"shape", "dtype"}},
    "hf" / "hf-sharded" / "hf-bf16": {"dir", "dtype", "files", "bytes"},
    "gguf": {T: {"file", "ftype", "bytes", "type_counts": {ggml type: n},
                 "tensor_types": {gguf tensor name: ggml type name (gguf-py's, e.g. Q4_K)}}},
    "reference": {T: {"json", "logits", "kv_cache", "kv_f32", "median_margin",
                 "margin_quantiles": {"0","0.01","0.05","0.5"}, and for T != F32:
                 "top1_agree_with_F32", "max_rel_err_vs_F32" (max |diff| / max |F32 logit|)}},
    "llama_cpp_ids_match": llama.cpp's own tokenization of the text == ids,
    "numpy_vs_llama_cpp_F32": {"max_rel_err", "top1_equal", "positions"},
    "bf16_gguf_equals_hf_bf16": BF16.gguf's token_embd bits == hf-bf16's (checked, must be true),
    "logit_std_median", "seconds", "cpu_seconds": {step: CPU seconds}}}}
All paths in the manifest are relative to DIR.

llama.cpp reference settings: Llama(path, n_ctx=512, n_batch=512, n_threads=2, seed=0,
logits_all=True, flash_attn=False, KV cache F16 (default) unless noted), llm.eval(ids),
llm.scores[:N]. The script also runs its own numpy forward pass on the HF f32 weights and
checks its logits against llama.cpp's F32 reference (and fails if they disagree).
"""
from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

VERSION = "v3"
SEEDS = {"llama": 1001, "qwen2": 1002, "qwen3": 1003}
VOCAB = 151669
HIDDEN = 256
LAYERS = 2
N_CTX = 512
FULL_POSITIONS = [0, 1, 7, 40, 101, 170, 233, -1]  # -1 = last position
TOPK = 8

ARCHS = {
    "llama": dict(
        hf_class="LlamaForCausalLM", model_type="llama", heads=4, kv_heads=1, head_dim=None,
        ffn=512, tied=False, bias=False, qk_norm=False, rope_theta=500000.0, eps=1e-5,
        max_pos=2048, out_gain=2.0,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 256},
    ),
    "qwen2": dict(
        hf_class="Qwen2ForCausalLM", model_type="qwen2", heads=4, kv_heads=2, head_dim=None,
        ffn=512, tied=True, bias=True, qk_norm=False, rope_theta=1000000.0, eps=1e-6,
        max_pos=4096, rope_scaling=None, out_gain=1.5,
    ),
    "qwen3": dict(
        hf_class="Qwen3ForCausalLM", model_type="qwen3", heads=4, kv_heads=2, head_dim=128,
        ffn=768, tied=True, bias=False, qk_norm=True, rope_theta=1000000.0, eps=1e-6,
        max_pos=4096, rope_scaling=None, out_gain=2.0,
    ),
}

# name -> llama_ftype (None: F32, written directly)
TYPES = {
    "F32": None, "F16": "LLAMA_FTYPE_MOSTLY_F16", "BF16": "LLAMA_FTYPE_MOSTLY_BF16",
    "Q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0", "Q4_1": "LLAMA_FTYPE_MOSTLY_Q4_1",
    "Q5_0": "LLAMA_FTYPE_MOSTLY_Q5_0", "Q5_1": "LLAMA_FTYPE_MOSTLY_Q5_1",
    "Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "Q2_K": "LLAMA_FTYPE_MOSTLY_Q2_K",
    "Q3_K": "LLAMA_FTYPE_MOSTLY_Q3_K_S", "Q4_K": "LLAMA_FTYPE_MOSTLY_Q4_K_S",
    "Q5_K": "LLAMA_FTYPE_MOSTLY_Q5_K_S", "Q6_K": "LLAMA_FTYPE_MOSTLY_Q6_K",
    "Q4_K_M": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
}

TEXT = """<|im_start|>user
Explain what this function does, then compute fib(12).<|im_end|>
<|im_start|>assistant
The function below returns the n-th Fibonacci number iteratively:

```python
def fib(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a
```

For n = 12 the loop runs 12 times and the result is 144. In Rust the same idea reads
`fn fib(n: u32) -> u64 { (0..n).fold((0, 1), |(a, b), _| (b, a + b)).0 }`.
Some numbers for testing: 3.14159, 2.71828, 1e-5, 65536, 0x7fff_ffff, -42 and 1,234,567.89.
On 2024-03-15 at 09:30 UTC, the quick brown fox jumped over 13 lazy dogs; café, naïve,
Zürich and 東京 are words too. JSON: {"id": 7, "tags": ["a", "b"], "ok": true, "v": null}.
SELECT name, COUNT(*) FROM users WHERE age >= 18 GROUP BY name ORDER BY 2 DESC LIMIT 10;
<|im_end|>
"""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- weights

def head_dim(a: dict) -> int:
    return a["head_dim"] or HIDDEN // a["heads"]


def make_weights(arch: str) -> dict[str, np.ndarray]:
    """HF-named f32 tensors, in HF order (the order they are drawn in)."""
    a = ARCHS[arch]
    rng = np.random.default_rng(SEEDS[arch])
    hd = head_dim(a)
    q_out, kv_out = a["heads"] * hd, a["kv_heads"] * hd

    def normal(shape, std):
        return (rng.standard_normal(shape, dtype=np.float32) * np.float32(std)).astype(np.float32)

    def linear(out_f, in_f, gain=1.0):
        return normal((out_f, in_f), gain / math.sqrt(in_f))

    def norm(n):
        return (1.0 + normal((n,), 0.1)).astype(np.float32)

    emb = normal((VOCAB, HIDDEN), 1.0)
    w: dict[str, np.ndarray] = {"model.embed_tokens.weight": emb}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = norm(HIDDEN)
        w[p + "self_attn.q_proj.weight"] = linear(q_out, HIDDEN)
        w[p + "self_attn.k_proj.weight"] = linear(kv_out, HIDDEN)
        w[p + "self_attn.v_proj.weight"] = linear(kv_out, HIDDEN)
        if a["bias"]:
            w[p + "self_attn.q_proj.bias"] = normal((q_out,), 0.5)
            w[p + "self_attn.k_proj.bias"] = normal((kv_out,), 0.5)
            w[p + "self_attn.v_proj.bias"] = normal((kv_out,), 0.5)
        if a["qk_norm"]:
            w[p + "self_attn.q_norm.weight"] = norm(hd)
            w[p + "self_attn.k_norm.weight"] = norm(hd)
        w[p + "self_attn.o_proj.weight"] = linear(HIDDEN, q_out, a["out_gain"])
        w[p + "post_attention_layernorm.weight"] = norm(HIDDEN)
        w[p + "mlp.gate_proj.weight"] = linear(a["ffn"], HIDDEN)
        w[p + "mlp.up_proj.weight"] = linear(a["ffn"], HIDDEN)
        w[p + "mlp.down_proj.weight"] = linear(HIDDEN, a["ffn"], a["out_gain"])
    w["model.norm.weight"] = norm(HIDDEN)
    if not a["tied"]:
        w["lm_head.weight"] = emb[rng.permutation(VOCAB)]
    # bf16-representable values: F32.gguf, BF16.gguf, hf/ and hf-bf16/ hold the same numbers
    return {n: from_bf16_bits(to_bf16_bits(t)) for n, t in w.items()}


def from_bf16_bits(b: np.ndarray) -> np.ndarray:
    return (b.astype(np.uint32) << 16).view(np.float32)


def to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """f32 -> bf16 bit patterns (uint16), round to nearest even (no NaNs here)."""
    u = x.astype(np.float32).view(np.uint32)
    r = ((u >> 16) & 1) + np.uint32(0x7FFF)
    return ((u + r) >> 16).astype(np.uint16)


# ---------------------------------------------------------------- safetensors (by hand)

def write_safetensors(path: Path, tensors: dict[str, np.ndarray], dtype: str = "F32") -> int:
    """Writes the safetensors format: u64 LE header length, JSON header (padded with spaces
    to a multiple of 8), then the data. dtype F32 or BF16. Returns the data size."""
    header: dict = {"__metadata__": {"format": "pt"}}
    blobs = []
    off = 0
    for name, t in tensors.items():
        b = (to_bf16_bits(t) if dtype == "BF16" else t.astype("<f4")).tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for b in blobs:
            f.write(b)
    return off


def hf_config(arch: str, dtype: str) -> dict:
    a = ARCHS[arch]
    c = {
        "architectures": [a["hf_class"]],
        "model_type": a["model_type"],
        "attention_dropout": 0.0,
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "hidden_act": "silu",
        "hidden_size": HIDDEN,
        "initializer_range": 0.02,
        "intermediate_size": a["ffn"],
        "max_position_embeddings": a["max_pos"],
        "num_attention_heads": a["heads"],
        "num_hidden_layers": LAYERS,
        "num_key_value_heads": a["kv_heads"],
        "rms_norm_eps": a["eps"],
        "rope_scaling": a["rope_scaling"],
        "rope_theta": a["rope_theta"],
        "tie_word_embeddings": a["tied"],
        "torch_dtype": dtype,
        "transformers_version": "4.51.3",
        "use_cache": True,
        "vocab_size": VOCAB,
    }
    if arch == "llama":
        c.update(attention_bias=False, mlp_bias=False, pretraining_tp=1)
    if arch == "qwen2":
        c.update(max_window_layers=LAYERS, sliding_window=a["max_pos"], use_sliding_window=False)
    if arch == "qwen3":
        c.update(attention_bias=False, head_dim=a["head_dim"], max_window_layers=LAYERS,
                 sliding_window=None, use_sliding_window=False)
    return dict(sorted(c.items()))


GENERATION_CONFIG = {
    "bos_token_id": 151643,
    "do_sample": True,
    "eos_token_id": [151645, 151643],
    "pad_token_id": 151643,
    "temperature": 0.6,
    "top_k": 20,
    "top_p": 0.95,
    "transformers_version": "4.51.3",
}


def write_hf(arch: str, w: dict[str, np.ndarray], root: Path, tok_dir: Path) -> dict:
    out = {}
    for kind, dtype in (("hf", "float32"), ("hf-sharded", "float32"), ("hf-bf16", "bfloat16")):
        d = root / kind
        d.mkdir(parents=True)
        (d / "config.json").write_text(json.dumps(hf_config(arch, dtype), indent=2) + "\n")
        (d / "generation_config.json").write_text(json.dumps(GENERATION_CONFIG, indent=2) + "\n")
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copyfile(tok_dir / f, d / f)
        if kind == "hf":
            write_safetensors(d / "model.safetensors", w)
            files = ["model.safetensors"]
        elif kind == "hf-bf16":
            write_safetensors(d / "model.safetensors", w, "BF16")
            files = ["model.safetensors"]
        else:
            names = list(w)
            cut = next(i for i, n in enumerate(names) if n.startswith("model.layers.1."))
            parts = [names[:cut], names[cut:]]
            files = [f"model-{k + 1:05d}-of-{len(parts):05d}.safetensors" for k in range(len(parts))]
            weight_map, total = {}, 0
            for fname, part in zip(files, parts):
                total += write_safetensors(d / fname, {n: w[n] for n in part})
                weight_map.update({n: fname for n in part})
            index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
            (d / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
        out[kind] = {
            "dir": f"{arch}/{kind}",
            "dtype": "BF16" if kind == "hf-bf16" else "F32",
            "files": files,
            "bytes": sum((d / f).stat().st_size for f in files),
        }
    return out


# ---------------------------------------------------------------- GGUF

def llama3_rope_factors(a: dict) -> np.ndarray:
    """convert_hf_to_gguf.py LlamaModel.generate_extra_tensors, in numpy (f32 freqs)."""
    rs = a["rope_scaling"]
    dim = head_dim(a)
    freqs = 1.0 / (np.float32(a["rope_theta"]) ** (np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)))
    factor, low, high = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
    old = rs["original_max_position_embeddings"]
    low_wl, high_wl = old / low, old / high
    out = []
    for f in freqs.astype(np.float32):
        wl = 2 * math.pi / float(f)
        if wl < high_wl:
            out.append(1.0)
        elif wl > low_wl:
            out.append(factor)
        else:
            s = (old / wl - low) / (high - low)
            out.append(1 / ((1 - s) / factor + s))
    return np.array(out, dtype=np.float32)


def permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """convert_hf_to_gguf.py LlamaModel.permute (HF rotate-half -> GGML interleaved)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


GGUF_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight", "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.weight": "attn_k.weight", "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.weight": "attn_v.weight", "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_norm.weight": "attn_q_norm.weight", "self_attn.k_norm.weight": "attn_k_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def gguf_name(hf: str) -> str:
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    _, _, i, rest = hf.split(".", 3)
    return f"blk.{i}.{GGUF_NAMES[rest]}"


def write_f32_gguf(arch: str, w: dict[str, np.ndarray], path: Path, tok_dir: Path) -> None:
    import gguf
    import gguf_vocab

    a = ARCHS[arch]
    wr = gguf.GGUFWriter(str(path), arch)
    # TextModel.prepare_metadata / set_gguf_parameters order
    wr.add_type(gguf.GGUFType.MODEL)
    wr.add_name(f"rill tiny {arch}")
    wr.add_block_count(LAYERS)
    wr.add_context_length(a["max_pos"])
    wr.add_embedding_length(HIDDEN)
    wr.add_feed_forward_length(a["ffn"])
    wr.add_head_count(a["heads"])
    wr.add_head_count_kv(a["kv_heads"])
    wr.add_rope_freq_base(a["rope_theta"])
    wr.add_layer_norm_rms_eps(a["eps"])
    if a["head_dim"] is not None:
        wr.add_key_length(a["head_dim"])
        wr.add_value_length(a["head_dim"])
    wr.add_file_type(gguf.LlamaFileType.ALL_F32)
    if arch == "llama":
        wr.add_vocab_size(VOCAB)
        wr.add_rope_dimension_count(head_dim(a))
    wr.add_quantization_version(gguf.GGML_QUANT_VERSION)
    n = gguf_vocab.add_hf_vocab(wr, tok_dir, pre="qwen2")
    assert n == VOCAB, n
    if a["rope_scaling"] is not None:
        wr.add_tensor("rope_freqs.weight", llama3_rope_factors(a))
    for hf, t in w.items():
        if arch == "llama" and hf.endswith("q_proj.weight"):
            t = permute(t, a["heads"])
        elif arch == "llama" and hf.endswith("k_proj.weight"):
            t = permute(t, a["kv_heads"])
        wr.add_tensor(gguf_name(hf), np.ascontiguousarray(t, dtype=np.float32))
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()


def quantize(src: Path, dst: Path, ftype_name: str) -> None:
    import llama_cpp
    from llama_cpp import _logger

    _logger.set_verbose(False)  # llama.cpp's per-tensor INFO lines; errors still print
    p = llama_cpp.llama_model_quantize_default_params()
    p.nthread = 2
    p.ftype = getattr(llama_cpp, ftype_name)
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(p))
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize({dst.name}, {ftype_name}) failed: {rc}")


def tensor_types(path: Path) -> dict[str, str]:
    import gguf

    r = gguf.GGUFReader(str(path))
    return {t.name: t.tensor_type.name for t in r.tensors}


# ---------------------------------------------------------------- llama.cpp reference

def llama_logits(path: Path, ids: list[int], kv_f32: bool = False) -> tuple[np.ndarray, list[int]]:
    import llama_cpp

    kw = {}
    if kv_f32:
        kw = dict(type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32)
    llm = llama_cpp.Llama(str(path), n_ctx=N_CTX, n_batch=N_CTX, n_threads=2, n_threads_batch=2,
                          seed=0, logits_all=True, flash_attn=False, verbose=False, **kw)
    try:
        toks = llm.tokenize(TEXT.encode(), add_bos=False, special=True)
        llm.eval(ids)
        logits = np.array(llm.scores[: len(ids)], dtype=np.float32)
    finally:
        llm.close()
    return logits, toks


def summarize(logits: np.ndarray) -> dict:
    part = np.argpartition(-logits, TOPK, axis=1)[:, :TOPK]
    vals = np.take_along_axis(logits, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    ids = np.take_along_axis(part, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    return {
        "top1": ids[:, 0].tolist(),
        "margin": [float(x) for x in (vals[:, 0] - vals[:, 1])],
        "topk_ids": ids.tolist(),
        "topk_logits": [[float(v) for v in row] for row in vals],
    }


def write_reference(ref: Path, name: str, gguf_rel: str, logits: np.ndarray, full: list[int],
                    extra: dict) -> dict:
    s = summarize(logits)
    (ref / f"{name}.logits.f32").write_bytes(logits[full].astype("<f4").tobytes())
    doc = {"file": gguf_rel, "n_vocab": int(logits.shape[1]), "n_positions": int(logits.shape[0]),
           "full_positions": full, "logits_file": f"{name}.logits.f32", **extra, **s}
    (ref / f"{name}.json").write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    return s


# ---------------------------------------------------------------- numpy forward (check)

def rms_norm(x, w, eps):
    x64 = x.astype(np.float64)
    return (x64 / np.sqrt((x64 * x64).mean(-1, keepdims=True) + eps) * w).astype(np.float32)


def numpy_forward(arch: str, w: dict[str, np.ndarray], ids: list[int], rows: list[int]) -> np.ndarray:
    """Straightforward HF-semantics forward pass (rotate-half RoPE on HF weights), f32/f64.
    Returns logits at `rows`."""
    a = ARCHS[arch]
    hd, nh, nkv, eps = head_dim(a), a["heads"], a["kv_heads"], a["eps"]
    n = len(ids)
    inv = 1.0 / (a["rope_theta"] ** (np.arange(0, hd, 2, dtype=np.float64) / hd))
    if a["rope_scaling"] is not None:
        inv = inv / llama3_rope_factors(a).astype(np.float64)
    ang = np.arange(n, dtype=np.float64)[:, None] * inv[None, :]
    cos, sin = np.cos(ang), np.sin(ang)

    def rope(x):  # x [n, h, hd]
        x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
        c, s = cos[:, None, :], sin[:, None, :]
        return np.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], axis=-1)

    h = w["model.embed_tokens.weight"][ids].astype(np.float64)
    mask = np.triu(np.full((n, n), -np.inf), 1)
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        x = rms_norm(h, w[p + "input_layernorm.weight"], eps).astype(np.float64)
        q = x @ w[p + "self_attn.q_proj.weight"].T.astype(np.float64)
        k = x @ w[p + "self_attn.k_proj.weight"].T.astype(np.float64)
        v = x @ w[p + "self_attn.v_proj.weight"].T.astype(np.float64)
        if a["bias"]:
            q += w[p + "self_attn.q_proj.bias"]
            k += w[p + "self_attn.k_proj.bias"]
            v += w[p + "self_attn.v_proj.bias"]
        q, k, v = q.reshape(n, nh, hd), k.reshape(n, nkv, hd), v.reshape(n, nkv, hd)
        if a["qk_norm"]:
            q = rms_norm(q, w[p + "self_attn.q_norm.weight"], eps).astype(np.float64)
            k = rms_norm(k, w[p + "self_attn.k_norm.weight"], eps).astype(np.float64)
        q, k = rope(q), rope(k)
        g = nh // nkv
        out = np.empty((n, nh, hd))
        for hh in range(nh):
            sc = q[:, hh] @ k[:, hh // g].T / math.sqrt(hd) + mask
            sc = np.exp(sc - sc.max(-1, keepdims=True))
            sc /= sc.sum(-1, keepdims=True)
            out[:, hh] = sc @ v[:, hh // g]
        h = h + out.reshape(n, nh * hd) @ w[p + "self_attn.o_proj.weight"].T.astype(np.float64)
        x = rms_norm(h, w[p + "post_attention_layernorm.weight"], eps).astype(np.float64)
        gt = x @ w[p + "mlp.gate_proj.weight"].T.astype(np.float64)
        up = x @ w[p + "mlp.up_proj.weight"].T.astype(np.float64)
        h = h + (gt / (1 + np.exp(-gt)) * up) @ w[p + "mlp.down_proj.weight"].T.astype(np.float64)
    x = rms_norm(h[rows], w["model.norm.weight"], eps).astype(np.float64)
    head = w["model.embed_tokens.weight"] if a["tied"] else w["lm_head.weight"]
    return (x @ head.T.astype(np.float64)).astype(np.float32)


# ---------------------------------------------------------------- main

def build_arch(arch: str, root: Path, tok_dir: Path, ids: list[int], types: list[str], full: list[int]) -> dict:
    t0 = time.time()
    c_start = time.process_time()
    d = root / arch
    (d / "gguf").mkdir(parents=True)
    ref = d / "reference"
    ref.mkdir()
    w = make_weights(arch)
    m: dict = {"config": hf_config(arch, "float32"), "seed": SEEDS[arch],
               "tensors": {n: {"shape": list(t.shape), "dtype": "F32"} for n, t in w.items()}}
    m.update(write_hf(arch, w, d, tok_dir))
    log(f"[{arch}] HF dirs written ({time.time() - t0:.1f}s)")

    f32 = d / "gguf" / "F32.gguf"
    cpu: dict[str, float] = {"weights+hf": time.process_time() - c_start}
    c0 = time.process_time()
    write_f32_gguf(arch, w, f32, tok_dir)
    cpu["write F32.gguf"] = time.process_time() - c0
    m["gguf"] = {}
    for ty in types:
        path = d / "gguf" / f"{ty}.gguf"
        c0 = time.process_time()
        if TYPES[ty] is not None:
            quantize(f32, path, TYPES[ty])
        cpu[f"quantize {ty}"] = time.process_time() - c0
        tt = tensor_types(path)
        counts: dict[str, int] = {}
        for v in tt.values():
            counts[v] = counts.get(v, 0) + 1
        m["gguf"][ty] = {"file": f"{arch}/gguf/{ty}.gguf", "ftype": TYPES[ty] or "LLAMA_FTYPE_ALL_F32",
                         "bytes": path.stat().st_size, "type_counts": counts, "tensor_types": tt}
    log(f"[{arch}] GGUF written ({time.time() - t0:.1f}s)")
    if "BF16" in types:  # llama.cpp's f32 -> bf16 must give back our bf16 values bit for bit
        import gguf

        r = gguf.GGUFReader(str(d / "gguf" / "BF16.gguf"))
        t = next(t for t in r.tensors if t.name == "token_embd.weight")
        same = np.array_equal(np.asarray(t.data).view(np.uint16).reshape(-1),
                              to_bf16_bits(w["model.embed_tokens.weight"]).reshape(-1))
        m["bf16_gguf_equals_hf_bf16"] = same
        if not same:
            raise SystemExit(f"{arch}: BF16.gguf token_embd differs from the bf16 weights")

    m["reference"] = {}
    f32_logits = None
    for ty in types:
        c0 = time.process_time()
        logits, toks = llama_logits(d / "gguf" / f"{ty}.gguf", ids)
        kv32, _ = llama_logits(d / "gguf" / f"{ty}.gguf", ids, kv_f32=True)
        cpu[f"eval {ty}"] = time.process_time() - c0
        # The noise floor: how far llama.cpp's own logits move when only the KV cache
        # precision changes (f16 -> f32).
        kv = {"top1_agree": float(np.mean(kv32.argmax(1) == logits.argmax(1))),
              "rel_err_full": float(np.abs(kv32[full] - logits[full]).max() / np.abs(logits[full]).max())}
        if kv["top1_agree"] < 0.995:
            raise SystemExit(f"{arch}/{ty}: llama.cpp's top-1 with an f16 vs an f32 KV cache agrees at only "
                             f"{kv['top1_agree']:.2%} of positions: the model is too fragile to compare top-1")
        c0 = time.process_time()
        s = write_reference(ref, ty, f"{arch}/gguf/{ty}.gguf", logits, full, {"kv_f32": kv})
        cpu[f"summarize {ty}"] = time.process_time() - c0
        entry = {"json": f"{arch}/reference/{ty}.json", "logits": f"{arch}/reference/{ty}.logits.f32",
                 "kv_cache": "F16", "kv_f32": kv,
                 "median_margin": float(np.median(s["margin"])),
                 "margin_quantiles": {q: float(np.quantile(s["margin"], float(q))) for q in ("0", "0.01", "0.05", "0.5")}}
        if ty == "F32":
            f32_logits = logits
            m["llama_cpp_ids_match"] = toks == ids
        elif f32_logits is not None:
            entry["top1_agree_with_F32"] = float(np.mean(np.argmax(logits, 1) == np.argmax(f32_logits, 1)))
            entry["max_rel_err_vs_F32"] = float(np.abs(logits - f32_logits).max() / np.abs(f32_logits).max())
        m["reference"][ty] = entry
        log(f"[{arch}] {ty}: median margin {entry['median_margin']:.2f}, 1% quantile "
            f"{entry['margin_quantiles']['0.01']:.2f}; kv f16/f32 top-1 {kv['top1_agree']:.2%}, rel {kv['rel_err_full']:.2e}")
    log(f"[{arch}] reference written ({time.time() - t0:.1f}s)")

    # Own forward pass on the HF weights vs llama.cpp's F32 reference.
    if f32_logits is not None:
        c0 = time.process_time()
        mine = numpy_forward(arch, w, ids, full)
        theirs = f32_logits[full]
        err = float(np.abs(mine - theirs).max() / np.abs(theirs).max())
        top = bool((mine.argmax(1) == theirs.argmax(1)).all())
        m["numpy_vs_llama_cpp_F32"] = {"max_rel_err": err, "top1_equal": top, "positions": full}
        log(f"[{arch}] numpy forward vs llama.cpp F32: max rel err {err:.2e}, top1 equal {top}")
        if err > 1e-3 or not top:
            raise SystemExit(f"{arch}: numpy forward pass disagrees with llama.cpp (rel err {err})")
        sd = f32_logits.std(axis=1)
        mg = np.array(m["reference"]["F32"]["median_margin"])
        m["logit_std_median"] = float(np.median(sd))
        log(f"[{arch}] median top1-top2 margin {float(mg):.3f}, median logit std {np.median(sd):.3f}")
        cpu["numpy forward"] = time.process_time() - c0
    m["seconds"] = round(time.time() - t0, 1)
    m["cpu_seconds"] = {k: round(v, 2) for k, v in cpu.items()}
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokenizer", required=True, type=Path, help="dir with Qwen3 tokenizer.json + tokenizer_config.json")
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("RILL_CACHE", Path.home() / ".cache/rill")) / "tiny-models" / VERSION)
    ap.add_argument("--archs", default=",".join(ARCHS))
    ap.add_argument("--types", default=",".join(TYPES))
    args = ap.parse_args()
    archs = args.archs.split(",")
    types = args.types.split(",")
    assert types[0] == "F32", "F32 comes first (the others are quantized from it)"
    t0 = time.time()

    from tokenizers import Tokenizer
    import llama_cpp

    ids = Tokenizer.from_file(str(args.tokenizer / "tokenizer.json")).encode(TEXT, add_special_tokens=False).ids
    full = sorted({p % len(ids) for p in FULL_POSITIONS})
    log(f"{len(ids)} token positions, full logits at {full}")

    out = args.out
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        manifest = {
            "version": VERSION,
            "generator": "scripts/models/tiny_models.py",
            "llama_cpp": {"llama_cpp_python": llama_cpp.__version__, "llama_cpp_commit": "0c1e57098",
                          "n_ctx": N_CTX, "n_threads": 2, "seed": 0, "flash_attn": False,
                          "kv_cache": "F16 (and F32 for the kv_f32 noise floor)"},
            "types": {t: TYPES[t] or "LLAMA_FTYPE_ALL_F32" for t in types},
            "vocab_size": VOCAB,
            "tokens": {"n": len(ids), "full_positions": full},
            "archs": {},
        }
        for arch in archs:
            m = build_arch(arch, tmp, args.tokenizer, ids, types, full)
            tokens = {"text": TEXT, "ids": ids, "full_positions": full,
                      "llama_cpp_ids_match": m.get("llama_cpp_ids_match")}
            (tmp / arch / "reference" / "tokens.json").write_text(json.dumps(tokens, ensure_ascii=False) + "\n")
            manifest["archs"][arch] = m
        manifest["seconds"] = round(time.time() - t0, 1)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"done in {time.time() - t0:.1f}s -> {out}")
    print(out)


if __name__ == "__main__":
    main()
