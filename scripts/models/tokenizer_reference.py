"""Reference token ids for tests/tokenizers.rs: tokenizes the corpus in
tests/fixtures/tokenizer_corpus.json with llama.cpp (llama-cpp-python 0.3.36, vocab-only
loads of GGUF vocabularies) and with the Hugging Face `tokenizers` package (the three
real tokenizer.json files), and writes tests/fixtures/tokenizer_reference.json:

    {"corpus": [...], "gguf": {NAME: {"plain": [[ids]...], "special": [[ids]...],
                                      "bos": [ids of "Hello" with add_bos],
                                      "decoded": [hex of llama.cpp's detokenize(plain ids)],
                                      "meta": {bos, eos, add_bos, add_eos, eog ids}}},
     "hf":   {NAME: {"plain": [...], "special": [...], "decoded": [decode(plain ids)]}}}

GGUF NAMEs: smollm (the default model's vocab) and the files make_vocab_ggufs.py writes
(qwen3-pre-NAME: the Qwen3 vocab under another pre-tokenizer name).
llama.cpp: `Llama(path, vocab_only=True).tokenize(text, add_bos=False, special=...)`.
`tokenizers`: `encode(text, add_special_tokens=False)`; "plain" sets
`encode_special_tokens = True` (special added tokens stay text, as llama.cpp's
special=False), "special" leaves the default (they are matched).

    python3 scripts/models/tokenizer_reference.py [--model PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def vocab_meta(llm) -> dict:
    """BOS/EOS ids (None when unset), add_bos/add_eos and every end-of-generation id."""
    import llama_cpp

    v = llm._model.vocab
    n = llama_cpp.llama_vocab_n_tokens(v)
    opt = lambda i: None if i < 0 else i  # noqa: E731
    return {
        "bos": opt(llama_cpp.llama_vocab_bos(v)),
        "eos": opt(llama_cpp.llama_vocab_eos(v)),
        "add_bos": bool(llama_cpp.llama_vocab_get_add_bos(v)),
        "add_eos": bool(llama_cpp.llama_vocab_get_add_eos(v)),
        "eog": [i for i in range(n) if llama_cpp.llama_vocab_is_eog(v, i)],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.environ.get("RILL_MODEL", str(ROOT / "models/SmolLM2-135M-Instruct.Q4_1.gguf")))
    ap.add_argument("--out", default=str(ROOT / "tests/fixtures/tokenizer_reference.json"))
    args = ap.parse_args()

    from llama_cpp import Llama
    from tokenizers import Tokenizer

    corpus = json.loads((ROOT / "tests/fixtures/tokenizer_corpus.json").read_text(encoding="utf-8"))
    vocab_dir = Path(
        subprocess.run(
            [sys.executable, str(ROOT / "scripts/models/make_vocab_ggufs.py")],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
    )
    tok_dir = Path(
        subprocess.run(
            ["bash", str(ROOT / "scripts/fetch_tokenizers.sh")], check=True, capture_output=True, text=True
        ).stdout.strip().splitlines()[-1]
    )
    ggufs = {
        "smollm": Path(args.model),
        "qwen3": vocab_dir / "qwen3.gguf",
        "llama3": vocab_dir / "llama3.gguf",
        "llama2-spm": vocab_dir / "llama2-spm.gguf",
        "llama2-spm-order": vocab_dir / "llama2-spm-order.gguf",
    }
    sys.path.insert(0, str(ROOT / "scripts/models"))
    from make_vocab_ggufs import PRE_VARIANTS

    for pre in PRE_VARIANTS:
        ggufs[f"qwen3-pre-{pre}"] = vocab_dir / f"qwen3-pre-{pre}.gguf"
    out: dict = {"corpus": corpus, "gguf": {}, "hf": {}}
    for name, path in ggufs.items():
        llm = Llama(str(path), vocab_only=True, verbose=False)
        enc = lambda t, sp: llm.tokenize(t.encode("utf-8"), add_bos=False, special=sp)  # noqa: E731
        plain = [enc(t, False) for t in corpus]
        out["gguf"][name] = {
            "plain": plain,
            "special": [enc(t, True) for t in corpus],
            "bos": llm.tokenize(b"Hello", add_bos=True, special=False),
            "decoded": [llm.detokenize(ids).hex() for ids in plain],
            "meta": vocab_meta(llm),
        }
        del llm
    for name in ("qwen3", "llama3", "llama2"):
        tk = Tokenizer.from_file(str(tok_dir / name / "tokenizer.json"))
        special = [tk.encode(t, add_special_tokens=False).ids for t in corpus]
        tk.encode_special_tokens = True
        plain = [tk.encode(t, add_special_tokens=False).ids for t in corpus]
        decoded = [tk.decode(ids, skip_special_tokens=False) for ids in plain]
        out["hf"][name] = {"plain": plain, "special": special, "decoded": decoded}
    text = json.dumps(out, ensure_ascii=False, separators=(",", ":"))
    Path(args.out).write_text(text + "\n", encoding="utf-8")
    print(f"wrote {args.out} ({len(text)} bytes)")


if __name__ == "__main__":
    main()
