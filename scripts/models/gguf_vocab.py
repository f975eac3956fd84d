"""Writes a Hugging Face tokenizer (tokenizer.json + tokenizer_config.json) into a GGUF
file's `tokenizer.ggml.*` metadata, as llama.cpp's convert_hf_to_gguf.py does, without
needing transformers.

    import gguf, gguf_vocab
    w = gguf.GGUFWriter(path, arch)
    gguf_vocab.add_hf_vocab(w, tokenizer_dir, pre="qwen2")

Byte-level BPE vocabularies (Qwen2/3, Llama 3, GPT-2) become `tokenizer.ggml.model =
gpt2` with the tokens in id order, their types (added special tokens CONTROL, other added
tokens USER_DEFINED) and the merges; `pre` names llama.cpp's pre-tokenizer.

Byte-fallback BPE vocabularies (Llama 2's tokenizer.json) become a SentencePiece
`tokenizer.ggml.model = llama` vocabulary with `add_hf_spm_vocab`, mirroring gguf-py's
`LlamaHfVocab` as convert_hf_to_gguf.py's `_set_vocab_llama_hf` uses it (tokens in id
order, BYTE for `<0xXX>`, CONTROL for the tokenizer's special tokens, score -1000 for
all) without needing transformers. `scores="order"` gives SentencePiece-style scores
instead (0 for control/byte tokens, -id for the others), as a tokenizer.model would.
"""
from __future__ import annotations

import json
import re
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


def add_special_ids(w: gguf.GGUFWriter, tok: dict, cfg: dict, names: tuple[str, ...]) -> None:
    """Writes `tokenizer.ggml.<name>_token_id` for each name whose token the config names."""
    for name in names:
        i = special_id(tok, cfg, f"{name}_token")
        if i is not None:
            getattr(w, f"add_{name}_token_id")(i)


def add_chat_template(w: gguf.GGUFWriter, cfg: dict) -> None:
    tmpl = cfg.get("chat_template")
    if isinstance(tmpl, str):
        w.add_chat_template(tmpl)


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
    add_special_ids(w, tok, cfg, ("bos", "eos", "pad"))
    w.add_add_bos_token(bool(cfg.get("add_bos_token", False)))
    add_chat_template(w, cfg)
    return len(tokens)


SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


def _token_content(v) -> str | None:
    if isinstance(v, dict):
        v = v.get("content")
    return v if isinstance(v, str) and v else None


def add_hf_spm_vocab(w: gguf.GGUFWriter, tokenizer_dir: Path, scores: str = "hf") -> int:
    """Adds a byte-fallback BPE tokenizer.json as a SentencePiece (`llama`) vocabulary,
    as `LlamaHfVocab` + `SpecialVocab` would; returns the vocab size."""
    tok, cfg = load(tokenizer_dir)
    model = tok["model"]
    if model["type"] != "BPE" or not model.get("byte_fallback"):
        raise ValueError(f"{tokenizer_dir}: not a byte-fallback BPE tokenizer.json")
    base: dict[str, int] = dict(model["vocab"])
    n_base = len(base)
    full = dict(base)
    for a in tok.get("added_tokens", []):
        full[a["content"]] = a["id"]
    # transformers' all_special_tokens: the named special tokens + additional ones
    names = [_token_content(cfg.get(k)) for k in SPECIAL_KEYS]
    names += [_token_content(t) for t in cfg.get("additional_special_tokens", [])]
    special_ids = {full[n] for n in names if n is not None and n in full}
    reverse = {i: t for t, i in full.items()}
    tokens: list[str] = []
    score_list: list[float] = []
    types: list[int] = []
    for i in range(n_base):
        text = reverse[i]
        if re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", text):
            ty = gguf.TokenType.BYTE
        elif i in special_ids:
            ty = CONTROL
        else:
            ty = NORMAL
        tokens.append(text)
        types.append(int(ty))
        if scores == "order":
            score_list.append(-float(i) if ty == NORMAL else 0.0)
        else:
            score_list.append(-1000.0)
    for a in sorted(tok.get("added_tokens", []), key=lambda a: a["id"]):
        if a["id"] < n_base:
            continue
        if a["id"] != len(tokens):
            raise ValueError(f"{tokenizer_dir}: added token ids are not contiguous at {a['id']}")
        tokens.append(a["content"])
        types.append(int(CONTROL if a["id"] in special_ids else USER_DEFINED))
        score_list.append(-1000.0 if scores != "order" else 0.0)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(score_list)
    w.add_token_types(types)
    add_special_ids(w, tok, cfg, ("bos", "eos", "unk", "pad"))
    for key, add in (("add_bos_token", w.add_add_bos_token), ("add_eos_token", w.add_add_eos_token)):
        if isinstance(cfg.get(key), bool):
            add(cfg[key])
    add_chat_template(w, cfg)
    return len(tokens)
