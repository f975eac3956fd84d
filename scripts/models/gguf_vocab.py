"""Writes a Hugging Face tokenizer (tokenizer.json + tokenizer_config.json) into a GGUF
file's `tokenizer.ggml.*` metadata, as llama.cpp's convert_hf_to_gguf.py does, without
needing transformers.

    import gguf, gguf_vocab
    w = gguf.GGUFWriter(path, arch)
    gguf_vocab.add_hf_vocab(w, tokenizer_dir, pre="qwen2")

Byte-level BPE vocabularies (Qwen2/3, Llama 3, GPT-2) become `tokenizer.ggml.model =
gpt2` with the tokens in id order, their types (added special tokens CONTROL, other added
tokens USER_DEFINED) and the merges; `pre` names llama.cpp's pre-tokenizer.
"""
from __future__ import annotations

import json
from pathlib import Path

import gguf

NORMAL = gguf.TokenType.NORMAL
CONTROL = gguf.TokenType.CONTROL
USER_DEFINED = gguf.TokenType.USER_DEFINED


def load(tokenizer_dir: Path) -> tuple[dict, dict]:
    tok = json.loads((Path(tokenizer_dir) / "tokenizer.json").read_text(encoding="utf-8"))
    cfg_path = Path(tokenizer_dir) / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.exists() else {}
    return tok, cfg


def token_table(tok: dict) -> tuple[list[str], list[int]]:
    """Tokens in id order and their GGUF types (holes filled as llama.cpp does)."""
    vocab: dict[str, int] = dict(tok["model"]["vocab"])
    types: dict[int, int] = {}
    for a in tok.get("added_tokens", []):
        vocab[a["content"]] = a["id"]
        types[a["id"]] = CONTROL if a.get("special") else USER_DEFINED
    n = max(vocab.values()) + 1
    tokens = [f"[PAD{i}]" for i in range(n)]
    ttypes = [USER_DEFINED] * n  # llama.cpp marks padding holes USER_DEFINED
    for t, i in vocab.items():
        tokens[i] = t
        ttypes[i] = types.get(i, NORMAL)
    return tokens, [int(t) for t in ttypes]


def special_id(tok: dict, cfg: dict, key: str) -> int | None:
    v = cfg.get(key)
    if isinstance(v, dict):
        v = v.get("content")
    if not v:
        return None
    for a in tok.get("added_tokens", []):
        if a["content"] == v:
            return a["id"]
    return tok["model"]["vocab"].get(v)


def add_hf_vocab(w: gguf.GGUFWriter, tokenizer_dir: Path, pre: str) -> int:
    """Adds the vocabulary, special ids and chat template; returns the vocab size."""
    tok, cfg = load(tokenizer_dir)
    model = tok["model"]
    if model["type"] != "BPE" or model.get("byte_fallback"):
        raise ValueError(f"{tokenizer_dir}: only byte-level BPE vocabularies are handled here")
    tokens, types = token_table(tok)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    for key, add in (
        ("bos_token", w.add_bos_token_id),
        ("eos_token", w.add_eos_token_id),
        ("pad_token", w.add_pad_token_id),
    ):
        i = special_id(tok, cfg, key)
        if i is not None:
            add(i)
    w.add_add_bos_token(bool(cfg.get("add_bos_token", False)))
    tmpl = cfg.get("chat_template")
    if isinstance(tmpl, str):
        w.add_chat_template(tmpl)
    return len(tokens)
