"""Writes vocabulary-only GGUF files for the tokenizer reference tests, converted from the
real Hugging Face tokenizer files (scripts/fetch_tokenizers.sh) with gguf_vocab.py:

    qwen3.gguf           Qwen3 tokenizer.json, byte-level BPE, pre "qwen2"
    llama3.gguf          Llama 3 tokenizer.json, byte-level BPE, pre "llama-bpe"
    llama2-spm.gguf      Llama 2 tokenizer.json as a SentencePiece `llama` vocab, as
                         convert_hf_to_gguf.py writes it (LlamaHfVocab: every score -1000)
    llama2-spm-order.gguf  the same with SentencePiece-style scores (-id)
    qwen3-pre-NAME.gguf  the Qwen3 vocabulary under each other pre-tokenizer name in
                         PRE_VARIANTS (one per regex group of llama.cpp), to check every
                         group's regexes, ignore_merges and BOS defaults

Each file holds the `tokenizer.ggml.*` metadata and the few `llama.*` hyperparameters a
vocab-only load in llama.cpp reads; no tensors. Files are cached under
${RILL_CACHE:-~/.cache/rill}/vocab-gguf/ (rewritten when this script or gguf_vocab.py
changes). Prints that directory.

    python3 scripts/models/make_vocab_ggufs.py
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import gguf

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import gguf_vocab  # noqa: E402

ROOT = HERE.parent.parent

# One `tokenizer.ggml.pre` name per regex group of llama.cpp's llm_tokenizer_bpe that rill
# supports (smollm, qwen2 and llama-bpe have files of their own above).
PRE_VARIANTS = [
    "default", "gpt-2", "deepseek-llm", "deepseek-coder", "deepseek-v3", "spark2_5", "youtu",
    "falcon", "jais-2", "qwen35", "poro-chat", "chatglm-bpe", "viking", "tekken", "chameleon",
    "gpt-4o", "granite-embed-multi-97m", "tiny_aya", "bailingmoe", "seed-coder", "ufakzeka",
    "grok-2", "laguna", "exaone-moe", "minicpm5", "dbrx",
]


def tokenizers_dir() -> Path:
    out = subprocess.run(
        ["bash", str(ROOT / "scripts/fetch_tokenizers.sh")], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip().splitlines()[-1])


def write(path: Path, fill) -> None:
    tmp = path.with_suffix(".tmp")
    w = gguf.GGUFWriter(str(tmp), "llama")
    n_vocab = fill(w)
    w.add_context_length(4096)
    w.add_embedding_length(64)
    w.add_block_count(1)
    w.add_feed_forward_length(128)
    w.add_head_count(1)
    w.add_head_count_kv(1)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(n_vocab)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tmp.replace(path)


def main() -> None:
    cache = Path(os.environ.get("RILL_CACHE", Path.home() / ".cache/rill")) / "vocab-gguf"
    cache.mkdir(parents=True, exist_ok=True)
    stamp = hashlib.sha256(
        (HERE / "gguf_vocab.py").read_bytes() + Path(__file__).read_bytes()
    ).hexdigest()
    stamp_file = cache / "STAMP"
    names = {
        "qwen3.gguf": lambda d: (lambda w: gguf_vocab.add_hf_vocab(w, d / "qwen3", pre="qwen2")),
        "llama3.gguf": lambda d: (lambda w: gguf_vocab.add_hf_vocab(w, d / "llama3", pre="llama-bpe")),
        "llama2-spm.gguf": lambda d: (lambda w: gguf_vocab.add_hf_spm_vocab(w, d / "llama2")),
        "llama2-spm-order.gguf": lambda d: (
            lambda w: gguf_vocab.add_hf_spm_vocab(w, d / "llama2", scores="order")
        ),
    }
    for pre in PRE_VARIANTS:
        names[f"qwen3-pre-{pre}.gguf"] = lambda d, pre=pre: (
            lambda w: gguf_vocab.add_hf_vocab(w, d / "qwen3", pre=pre)
        )
    fresh = stamp_file.exists() and stamp_file.read_text() == stamp
    if not (fresh and all((cache / n).is_file() for n in names)):
        d = tokenizers_dir()
        for n, fill in names.items():
            write(cache / n, fill(d))
        stamp_file.write_text(stamp)
    print(cache)


if __name__ == "__main__":
    main()
