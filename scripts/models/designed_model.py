#!/usr/bin/env python3
"""A Qwen3-architecture model with constructed (not random) weights whose greedy output
follows designed token sequences: reasoning (`<think>...</think>`), Hermes tool calls
(`<tool_call>{json}</tool_call>`) and plain answers, for deterministic end-to-end tests
of reasoning and tool-call streaming through rill's real loader and forward pass.

    python3 scripts/models/designed_model.py --tokenizer DIR/qwen3 --out DIR

Normally run through scripts/designed_model.sh, which caches the result under
${RILL_CACHE:-~/.cache/rill}/tiny-models/designed-v1/ and prints that directory. The
script builds in a sibling temporary directory and renames it into place at the end.

Output (DIR):
    config.json              Qwen3ForCausalLM, hidden HIDDEN, 2 layers, 4 heads / 2 KV
                             heads (GQA), head_dim 128, tied embeddings, rope_theta 1e6
    model.safetensors        f32 (every value is also exactly a bf16 value)
    tokenizer.json, tokenizer_config.json
                             the real Qwen3 tokenizer and chat template, copied
    designed.json            {"version", "generator", "min_margin", "model": {...},
                             "scenarios": [{"name", "request": {"messages", "tools",
                             "add_generation_prompt", "chat_template_kwargs"},
                             "prompt_text", "prompt_ids", "output_ids", "output_text",
                             "output_tokens", "min_margin"}]}
No generation_config.json: the tests decode greedily (temperature 0).

Scenarios (see SCENARIOS): think_then_two_calls (tools, thinking on: reasoning, then calls
of get_weather and get_time), answer_after_tool_results (the tool results in the history,
enable_thinking false: a plain answer), think_then_answer (no tools: reasoning, then an
answer), and the same three requests with thinking switched the other way
(two_calls_without_thinking, think_then_answer_after_tool_results,
answer_without_thinking). Each prompt is rendered with jinja2 exactly as transformers'
apply_chat_template renders it (scripts/models/template_reference.py), tokenized with the
`tokenizers` package; the designed output is the tokenization of the designed text. The
model decides from the last three tokens and three flags only (below), so other prompts
that end the same way (a system message added, tool call ids, other wording) get the
same outputs.

How the weights work (one-hot features, no superposition, so nothing depends on luck):
the residual stream has a constant dimension, a "current token" slot (a one-hot over
the tokens the design uses, plus OTHER for every other token), "previous token" and
"token before that" slots, and three flag dimensions (+1/-1).
- Layer 0, KV head 0: keys are constant; its two query heads are rotated so that the
  RoPE score peaks at relative offset 1 and 2 (the per-frequency weights come from a
  small max-min game solved below, so the peak beats every other offset below
  max_position_embeddings by a wide gap); values copy the current-token slot, o_proj
  writes it into the previous-token slots.
- Layer 0, KV head 1 and layer 1, KV head 0: "is token X anywhere in the context" heads:
  keys point along a low-frequency RoPE pair (nearly position independent) for the flag
  token and elsewhere for every other token; the value is +1 for the flag token and -1
  otherwise, so the head outputs +1 when the token occurred and -1 when it did not.
  Flags: `<tool_call>` (tools were offered), `"}}\\n` (a call was closed), `Europe` (the
  second call's argument has been written).
- Layer 1 MLP: one neuron per designed context (current, previous, previous-but-one
  token and the three flags) that fires only when all six features match (SiLU gate with
  threshold 5.5 of 6) and writes the designed next token into the current-token slot
  (erasing the current token). Tied embeddings read that slot out as logits.
Every other weight is zero (layer 0's MLP, layer 1's second KV head).

The script checks its own model: a numpy forward pass with the real Qwen3 math (RMSNorm,
per-head q_norm/k_norm, NeoX RoPE, GQA, causal softmax attention, SiLU MLP, final norm,
tied output) runs each prompt + designed output teacher-forced, once with f32 K/V and once
with K/V rounded to f16 (as rill's cache holds them), and greedy decoding must reproduce
every designed token with a logit margin (designed token minus the best other) of at
least MIN_MARGIN; otherwise it exits non-zero and writes nothing. It also fails when two
designed contexts with different successors look the same to the features above.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from template_reference import compile_template  # noqa: E402
from tiny_models import from_bf16_bits, to_bf16_bits, write_safetensors  # noqa: E402

VERSION = "designed-v1"
VOCAB = 151669
LAYERS = 2
HEADS = 4
KV_HEADS = 2
HEAD_DIM = 128
ROPE_THETA = 1000000.0
EPS = 1e-6
MAX_POS = 4096
MIN_MARGIN = 4.0  # logits; the generator refuses a model with a smaller one

# Token ids (Qwen3 tokenizer) the construction names.
TOOL_CALL, TOOL_CALL_END = 151657, 151658
# Flag tokens: whether each occurs anywhere in the context so far.
FLAG_TEXTS = ["<tool_call>", '"}}\n', "Europe"]

# Scales of the construction (see the module doc).
QK_SCALE = 2.25  # q_norm / k_norm weight: sharpness of every attention head
GATE_SCALE = 16.0  # MLP gate: +8 for a full match, <= -8 for any mismatch
OUT_GAIN = 4.0  # what a firing neuron writes into the current-token slot

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name"}},
            "required": ["city"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Get the current local time in a timezone.",
        "parameters": {
            "type": "object",
            "properties": {"timezone": {"type": "string", "description": "IANA timezone name"}},
            "required": ["timezone"],
        },
    },
}
USER_Q = {"role": "user", "content": "What is the weather and the time in Paris?"}
CALLS = [
    {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
    {"type": "function", "function": {"name": "get_time", "arguments": {"timezone": "Europe/Paris"}}},
]

TWO_CALLS = ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
             '<tool_call>\n{"name": "get_time", "arguments": {"timezone": "Europe/Paris"}}\n</tool_call>'
             "<|im_end|>")
ANSWER = "It is sunny and 21 degrees in Paris; the time is 14:05.<|im_end|>"
HELLO = "Hello! How can I help?<|im_end|>"
NO_THINKING = {"enable_thinking": False}


def request(messages: list[dict], tools: list[dict] | None, kwargs: dict) -> dict:
    return {"messages": messages, "tools": tools, "add_generation_prompt": True,
            "chat_template_kwargs": kwargs}


WEATHER_AND_TIME = [USER_Q]
AFTER_RESULTS = [
    USER_Q,
    {"role": "assistant", "content": "", "tool_calls": CALLS},
    {"role": "tool", "content": '{"temperature": 21, "sky": "sunny"}'},
    {"role": "tool", "content": '"14:05"'},
]
HELLO_Q = [{"role": "user", "content": "Say hello."}]

# The first three are the designs the tests are about; the other three are the same
# requests with thinking switched the other way, so that a test rendering with either
# setting gets a designed answer.
SCENARIOS = [
    {"name": "think_then_two_calls", "request": request(WEATHER_AND_TIME, [WEATHER, TIME], {}),
     "output": "<think>\nI need the weather and the time.\n</think>\n\n" + TWO_CALLS},
    {"name": "answer_after_tool_results", "request": request(AFTER_RESULTS, [WEATHER, TIME], NO_THINKING),
     "output": ANSWER},
    {"name": "think_then_answer", "request": request(HELLO_Q, None, {}),
     "output": "<think>\nThe user greets me.\n</think>\n\n" + HELLO},
    {"name": "two_calls_without_thinking", "request": request(WEATHER_AND_TIME, [WEATHER, TIME], NO_THINKING),
     "output": TWO_CALLS},
    {"name": "think_then_answer_after_tool_results", "request": request(AFTER_RESULTS, [WEATHER, TIME], {}),
     "output": "<think>\nI have the weather and the time.\n</think>\n\n" + ANSWER},
    {"name": "answer_without_thinking", "request": request(HELLO_Q, None, NO_THINKING), "output": HELLO},
]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Refused(Exception):
    """The design or its verification failed: no model is written."""


# ---------------------------------------------------------------- scenarios


def render_scenarios(tok_dir: Path) -> list[dict]:
    """Prompt text and ids (jinja2 as transformers renders, `tokenizers` encoding) and the
    designed output ids of every scenario."""
    from tokenizers import Tokenizer

    cfg = json.loads((tok_dir / "tokenizer_config.json").read_text())
    template = compile_template(cfg["chat_template"])
    tok = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    out = []
    for sc in SCENARIOS:
        req = sc["request"]
        text = template.render(
            messages=req["messages"], tools=req["tools"], documents=None,
            add_generation_prompt=req["add_generation_prompt"],
            bos_token=cfg.get("bos_token") or "", eos_token=cfg.get("eos_token") or "",
            **req["chat_template_kwargs"],
        )
        prompt_ids = tok.encode(text, add_special_tokens=False).ids
        output_ids = tok.encode(sc["output"], add_special_tokens=False).ids
        if tok.decode(output_ids, skip_special_tokens=False) != sc["output"]:
            raise Refused(f"{sc['name']}: the designed output does not round-trip")
        out.append({
            "name": sc["name"], "request": req, "prompt_text": text, "prompt_ids": prompt_ids,
            "output_ids": output_ids, "output_text": sc["output"],
            "output_tokens": [tok.decode([i], skip_special_tokens=False) for i in output_ids],
        })
    flags = []
    for t in FLAG_TEXTS:
        ids = tok.encode(t, add_special_tokens=False).ids
        if len(ids) != 1:
            raise Refused(f"flag text {t!r} is not one token: {ids}")
        flags.append(ids[0])
    return out, flags


def contexts(scenarios: list[dict], flags: list[int]) -> dict[tuple, int]:
    """Every designed decision: the features at the position (current token, previous,
    previous-but-one, flag bits) -> the designed next token. Refuses collisions."""
    table: dict[tuple, tuple[int, str, int]] = {}
    clashes = []
    for sc in scenarios:
        seq = sc["prompt_ids"] + sc["output_ids"]
        seen = set(seq[: len(sc["prompt_ids"]) - 1])
        for t in range(len(sc["prompt_ids"]) - 1, len(seq) - 1):
            seen.add(seq[t])
            key = (seq[t], seq[t - 1], seq[t - 2]) + tuple(f in seen for f in flags)
            want = (seq[t + 1], sc["name"], t)
            if key in table and table[key][0] != want[0]:
                clashes.append(f"{key}: {table[key]} vs {want}")
            table.setdefault(key, want)
    if clashes:
        raise Refused("designed contexts collide under the features:\n  " + "\n  ".join(clashes))
    return {k: v[0] for k, v in table.items()}


# ---------------------------------------------------------------- RoPE offset kernel


def rope_freqs() -> np.ndarray:
    return ROPE_THETA ** (-np.arange(0, HEAD_DIM, 2, dtype=np.float64) / HEAD_DIM)


def offset_kernel(n: int = MAX_POS, iters: int = 3000) -> tuple[np.ndarray, float]:
    """Weights p (a distribution over the 64 RoPE pairs) maximising the worst-case gap
    g = min over offsets x = 1..n of sum_i p_i (1 - cos(x theta_i)): a head whose query is
    the key rotated back by d positions, with pair i weighted sqrt(p_i) in both, scores
    offset d highest by g * sqrt(head_dim) * QK_SCALE^2 over every other offset.
    Fictitious play on the zero-sum game (deterministic)."""
    a = 1.0 - np.cos(np.outer(np.arange(1, n + 1, dtype=np.float64), rope_freqs()))
    xs = np.zeros(n)
    xs[0] = 1
    ps = np.zeros(a.shape[1])
    for _ in range(iters):
        ps[np.argmax(xs @ a)] += 1
        xs[np.argmin(a @ ps)] += 1
    p = ps / ps.sum()
    return p, float((a @ p).min())


# ---------------------------------------------------------------- weights


def bf16(x: np.ndarray) -> np.ndarray:
    return from_bf16_bits(to_bf16_bits(np.asarray(x, dtype=np.float32)))


def build(scenarios: list[dict], flags: list[int], table: dict[tuple, int]):
    keys = list(table)
    p1_set = sorted({k[1] for k in keys})
    p2_set = sorted({k[2] for k in keys})
    # every token the features or the outputs name has its own current-token dimension
    cur_set = sorted({k[0] for k in keys} | set(p1_set) | set(p2_set) | set(table.values())
                     | set(flags))
    n_flags = len(flags)
    # Residual layout.
    const = 0
    tok0 = 1
    tok = {t: tok0 + i for i, t in enumerate(cur_set)}
    tok_other = tok0 + len(cur_set)
    p10 = tok_other + 1
    p1 = {t: p10 + i for i, t in enumerate(p1_set)}
    p1_other = p10 + len(p1_set)
    p20 = p1_other + 1
    p2 = {t: p20 + i for i, t in enumerate(p2_set)}
    p2_other = p20 + len(p2_set)
    flag0 = p2_other + 1
    used = flag0 + n_flags
    hidden = 64 * math.ceil(used / 64)
    ffn = 64 * math.ceil(len(keys) / 64)
    if len(cur_set) + 1 > HEAD_DIM:
        raise Refused(f"{len(cur_set)} designed tokens do not fit one {HEAD_DIM}-wide value head")
    hd, half = HEAD_DIM, HEAD_DIM // 2
    qd, kvd = HEADS * hd, KV_HEADS * hd

    w: dict[str, np.ndarray] = {}
    emb = np.zeros((VOCAB, hidden), np.float32)
    emb[:, const] = 1.0
    emb[:, tok_other] = 1.0
    for t, d in tok.items():
        emb[t, tok_other] = 0.0
        emb[t, d] = 1.0
    w["model.embed_tokens.weight"] = emb

    def layer(i: int) -> dict[str, np.ndarray]:
        p = f"model.layers.{i}."
        return {
            p + "input_layernorm.weight": np.ones(hidden, np.float32),
            p + "self_attn.q_proj.weight": np.zeros((qd, hidden), np.float32),
            p + "self_attn.k_proj.weight": np.zeros((kvd, hidden), np.float32),
            p + "self_attn.v_proj.weight": np.zeros((kvd, hidden), np.float32),
            p + "self_attn.o_proj.weight": np.zeros((hidden, qd), np.float32),
            p + "self_attn.q_norm.weight": np.full(hd, QK_SCALE, np.float32),
            p + "self_attn.k_norm.weight": np.full(hd, QK_SCALE, np.float32),
            p + "post_attention_layernorm.weight": np.ones(hidden, np.float32),
            p + "mlp.gate_proj.weight": np.zeros((ffn, hidden), np.float32),
            p + "mlp.up_proj.weight": np.zeros((ffn, hidden), np.float32),
            p + "mlp.down_proj.weight": np.zeros((hidden, ffn), np.float32),
        }

    l0, l1 = layer(0), layer(1)
    g = lambda l, i, n: l[f"model.layers.{i}.self_attn.{n}.weight"]  # noqa: E731

    # Layer 0, KV head 0: previous-token heads (q head 0: offset 1, q head 1: offset 2).
    # q/k are normalised per head (q_norm/k_norm), so only their directions matter here.
    pk, gap = offset_kernel()
    th = rope_freqs()
    amp = np.sqrt(pk)
    k0 = g(l0, 0, "k_proj")
    k0[0:half, const] = amp
    q0 = g(l0, 0, "q_proj")
    for head, off in ((0, 1), (1, 2)):
        q0[head * hd: head * hd + half, const] = amp * np.cos(off * th)
        q0[head * hd + half: head * hd + hd, const] = -amp * np.sin(off * th)
    # Values: the current-token slot (value dim j = token slot j, OTHER included); the
    # input norm scales the unit embedding entries to 1/r0, o_proj scales back to 1.
    r0 = math.sqrt(2.0 / hidden)  # rms of every embedding row (const + one one-hot)
    v0 = g(l0, 0, "v_proj")
    o0 = g(l0, 0, "o_proj")
    for j, d in enumerate(list(tok.values()) + [tok_other]):
        v0[j, d] = 1.0
    inv_tok = {d: t for t, d in tok.items()}
    for j, d in enumerate(list(tok.values()) + [tok_other]):
        t = inv_tok.get(d)
        o0[p1.get(t, p1_other), 0 * hd + j] = r0
        o0[p2.get(t, p2_other), 1 * hd + j] = r0

    # Flag heads: (layer, kv head, q head) per flag. Keys: base direction in RoPE pair
    # half-1 (the lowest frequency) plus, for the flag token, the flag's own pair.
    flag_heads = [(l0, 0, 1, 2), (l0, 0, 1, 3), (l1, 1, 0, 0)]
    if len(flag_heads) < n_flags:
        raise Refused("more flags than flag heads")
    base_dim = half - 1
    for f, (l, li, kvh, qh) in enumerate(flag_heads[:n_flags]):
        # rms of the residual the head reads: the embedding (layer 0), or the embedding,
        # both previous-token slots and layer 0's two flags (layer 1)
        r = r0 if li == 0 else math.sqrt((2.0 + 2.0 + 2.0) / hidden)
        fd = half - 2 - f  # this flag's low-frequency pair
        kk = g(l, li, "k_proj")
        kk[kvh * hd + base_dim, const] = 1.0
        kk[kvh * hd + fd, tok[flags[f]]] = 1.0
        g(l, li, "q_proj")[qh * hd + fd, const] = 1.0
        # Value dim fd of the KV head: +1 for the flag token, -1 for the others (x holds
        # entries 1/r for const and the token's slot).
        vv = g(l, li, "v_proj")
        vv[kvh * hd + fd, const] = -r
        vv[kvh * hd + fd, tok[flags[f]]] = 2 * r
        g(l, li, "o_proj")[flag0 + f, qh * hd + fd] = 1.0

    # Layer 1 MLP: one neuron per designed context.
    rm = math.sqrt((1.0 + 3 * 1.0 + n_flags * 1.0) / hidden)  # rms entering the MLP
    n_feat = 3 + n_flags
    gate = l1["model.layers.1.mlp.gate_proj.weight"]
    up = l1["model.layers.1.mlp.up_proj.weight"]
    down = l1["model.layers.1.mlp.down_proj.weight"]
    fire = GATE_SCALE * 0.5
    fire_out = fire / (1.0 + math.exp(-fire))  # silu at a full match
    for j, key in enumerate(keys):
        cur, prev, prev2 = key[:3]
        gate[j, tok[cur]] += GATE_SCALE * rm
        gate[j, p1[prev]] += GATE_SCALE * rm
        gate[j, p2[prev2]] += GATE_SCALE * rm
        for f, on in enumerate(key[3:]):
            gate[j, flag0 + f] += GATE_SCALE * rm * (1.0 if on else -1.0)
        gate[j, const] = -GATE_SCALE * rm * (n_feat - 0.5)
        up[j, const] = rm
        down[tok[table[key]], j] += OUT_GAIN / fire_out
        down[tok[cur], j] -= 1.0 / fire_out
    w.update(l0)
    w.update(l1)
    w["model.norm.weight"] = np.ones(hidden, np.float32)
    w = {n: bf16(t) for n, t in w.items()}
    layout = {
        "hidden_size": hidden, "intermediate_size": ffn, "residual_dims_used": used,
        "designed_tokens": len(cur_set), "prev_tokens": len(p1_set), "prev2_tokens": len(p2_set),
        "contexts": len(keys), "flag_token_ids": flags, "flag_texts": FLAG_TEXTS,
        "offset_kernel_gap": gap * math.sqrt(HEAD_DIM) * QK_SCALE ** 2,
    }
    return w, layout


# ---------------------------------------------------------------- numpy forward (check)


def rms_norm(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + EPS) * w


def forward(w: dict[str, np.ndarray], ids: list[int], rows: list[int], f16_kv: bool) -> np.ndarray:
    """Qwen3 (HF semantics: NeoX RoPE on q/k after q_norm/k_norm, GQA, causal softmax,
    SiLU MLP, final norm, tied output) in float64 on the f32 weights; with f16_kv the
    roped keys and the values are rounded to f16 first. Logits at `rows`."""
    n, hd, half = len(ids), HEAD_DIM, HEAD_DIM // 2
    ang = np.arange(n, dtype=np.float64)[:, None] * rope_freqs()[None, :]
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]

    def rope(x):
        x1, x2 = x[..., :half], x[..., half:]
        return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)

    f64 = lambda name: w[name].astype(np.float64)  # noqa: E731
    h = w["model.embed_tokens.weight"][ids].astype(np.float64)
    mask = np.triu(np.full((n, n), -np.inf), 1)
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        x = rms_norm(h, f64(p + "input_layernorm.weight"))
        q = (x @ f64(p + "self_attn.q_proj.weight").T).reshape(n, HEADS, hd)
        k = (x @ f64(p + "self_attn.k_proj.weight").T).reshape(n, KV_HEADS, hd)
        v = (x @ f64(p + "self_attn.v_proj.weight").T).reshape(n, KV_HEADS, hd)
        q = rope(rms_norm(q, f64(p + "self_attn.q_norm.weight")))
        k = rope(rms_norm(k, f64(p + "self_attn.k_norm.weight")))
        if f16_kv:
            k = k.astype(np.float16).astype(np.float64)
            v = v.astype(np.float16).astype(np.float64)
        group = HEADS // KV_HEADS
        out = np.empty((n, HEADS, hd))
        for hh in range(HEADS):
            sc = q[:, hh] @ k[:, hh // group].T / math.sqrt(hd) + mask
            sc = np.exp(sc - sc.max(-1, keepdims=True))
            sc /= sc.sum(-1, keepdims=True)
            out[:, hh] = sc @ v[:, hh // group]
        h = h + out.reshape(n, HEADS * hd) @ f64(p + "self_attn.o_proj.weight").T
        x = rms_norm(h, f64(p + "post_attention_layernorm.weight"))
        a = x @ f64(p + "mlp.gate_proj.weight").T
        b = x @ f64(p + "mlp.up_proj.weight").T
        h = h + (a / (1.0 + np.exp(-a)) * b) @ f64(p + "mlp.down_proj.weight").T
    x = rms_norm(h[rows], f64("model.norm.weight")).astype(np.float32)
    return x @ w["model.embed_tokens.weight"].T


def verify(w: dict[str, np.ndarray], scenarios: list[dict]) -> float:
    """Greedy decoding reproduces every designed output (teacher-forced: position t's
    argmax must be token t+1) with margin >= MIN_MARGIN, with f32 and f16 K/V. Returns
    the smallest margin; stores each scenario's in it."""
    worst = math.inf
    for sc in scenarios:
        pi, oi = sc["prompt_ids"], sc["output_ids"]
        seq = pi + oi
        rows = list(range(len(pi) - 1, len(seq) - 1))
        sc_min = math.inf
        for f16_kv in (False, True):
            logits = forward(w, seq, rows, f16_kv)
            for r, t in enumerate(rows):
                want = seq[t + 1]
                row = logits[r].astype(np.float64)
                top = int(np.argmax(row))
                other = np.delete(row, want).max()
                margin = float(row[want] - other)
                if top != want or margin < MIN_MARGIN:
                    raise Refused(f"{sc['name']} step {t - rows[0]} (f16_kv={f16_kv}): designed "
                                  f"{want}, argmax {top}, margin {margin:.3f} < {MIN_MARGIN}")
                sc_min = min(sc_min, margin)
        sc["min_margin"] = round(sc_min, 4)
        log(f"  {sc['name']}: {len(oi)} tokens reproduced, min margin {sc_min:.3f}")
        worst = min(worst, sc_min)
    return worst


def offset_check(w: dict[str, np.ndarray]) -> float:
    """Smallest attention weight the previous-token heads put on their offset, for a query
    at every position below MAX_POS (RoPE in float64, as the verifier computes)."""
    x = np.zeros(w["model.embed_tokens.weight"].shape[1])
    x[0] = 1.0
    worst = 1.0
    th = rope_freqs()
    qn = w["model.layers.0.self_attn.q_norm.weight"].astype(np.float64)
    kn = w["model.layers.0.self_attn.k_norm.weight"].astype(np.float64)
    k = w["model.layers.0.self_attn.k_proj.weight"][:HEAD_DIM].astype(np.float64) @ x
    k = k / np.sqrt((k * k).mean()) * kn
    d = np.arange(MAX_POS, dtype=np.float64)
    for head, off in ((0, 1), (1, 2)):
        q = w["model.layers.0.self_attn.q_proj.weight"][head * HEAD_DIM:(head + 1) * HEAD_DIM] @ x
        q = q / np.sqrt((q * q).mean()) * qn
        # score(offset) = sum_i (q1 k1 + q2 k2) cos(d th) + (q2 k1 - q1 k2) sin(d th) ...
        half = HEAD_DIM // 2
        c, s = np.cos(np.outer(d, th)), np.sin(np.outer(d, th))
        q1, q2, k1, k2 = q[:half], q[half:], k[:half], k[half:]
        score = (c @ (q1 * k1 + q2 * k2) + s @ (q1 * k2 - q2 * k1)) / math.sqrt(HEAD_DIM)
        # queries at position t see offsets 0..t; the worst t is where the most mass leaks
        e = np.exp(score - score[off])
        cum = np.cumsum(e)
        frac = 1.0 / cum[off:]  # weight on `off` for t = off..MAX_POS-1
        worst = min(worst, float(frac.min()))
    return worst


# ---------------------------------------------------------------- output


def hf_config(layout: dict) -> dict:
    c = {
        "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3",
        "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": 151643, "eos_token_id": 151645,
        "head_dim": HEAD_DIM, "hidden_act": "silu", "hidden_size": layout["hidden_size"],
        "initializer_range": 0.02, "intermediate_size": layout["intermediate_size"],
        "max_position_embeddings": MAX_POS, "max_window_layers": LAYERS,
        "num_attention_heads": HEADS, "num_hidden_layers": LAYERS, "num_key_value_heads": KV_HEADS,
        "rms_norm_eps": EPS, "rope_scaling": None, "rope_theta": ROPE_THETA,
        "sliding_window": None, "tie_word_embeddings": True, "torch_dtype": "float32",
        "transformers_version": "4.51.3", "use_cache": True, "use_sliding_window": False,
        "vocab_size": VOCAB,
    }
    return dict(sorted(c.items()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokenizer", required=True, help="the Qwen3 tokenizer directory "
                    "(scripts/fetch_tokenizers.sh prints its parent)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    t0 = time.time()
    tok_dir, out = Path(args.tokenizer), Path(args.out)
    try:
        scenarios, flags = render_scenarios(tok_dir)
        table = contexts(scenarios, flags)
        w, layout = build(scenarios, flags, table)
        log(f"designed model: {layout}")
        attn = offset_check(w)
        log(f"  previous-token heads: >= {attn:.6f} of the attention on their offset "
            f"(all positions < {MAX_POS})")
        if attn < 0.999:
            raise Refused(f"previous-token heads are not sharp enough ({attn})")
        margin = verify(w, scenarios)
    except Refused as e:
        log(f"designed_model.py: REFUSED: {e}")
        return 1
    log(f"  min margin over all scenarios: {margin:.3f} logits")
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / "config.json").write_text(json.dumps(hf_config(layout), indent=2) + "\n")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(tok_dir / f, tmp / f)
    write_safetensors(tmp / "model.safetensors", w)
    doc = {
        "version": VERSION, "generator": "scripts/models/designed_model.py",
        "min_margin": round(margin, 4), "model": {**layout, "prev_token_attention": attn},
        "seconds": round(time.time() - t0, 2), "scenarios": scenarios,
    }
    (tmp / "designed.json").write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    log(f"wrote {out} in {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
