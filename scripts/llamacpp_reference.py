#!/usr/bin/env python3
"""Reference data from llama.cpp (via llama-cpp-python) for rill's Rust tests.

Produces tests/fixtures/llamacpp_reference.json for the default model
(SmolLM2-135M-Instruct, GGUF Q4_1). Rerun with:

    pip install llama-cpp-python==0.3.36 jinja2     # builds llama.cpp from source (minutes)
    python3 scripts/llamacpp_reference.py models/SmolLM2-135M-Instruct.Q4_1.gguf \
        tests/fixtures/llamacpp_reference.json

The output is deterministic (CPU, n_threads=2, fixed inputs, argmax done here) and the
script refuses to run with another llama-cpp-python version or another model file
(checked by sha256), so reruns give byte-identical JSON. Contents:

  tokenize          [{text, ids}]  llm.tokenize(text.encode(), add_bos=False, special=False):
                    control-token look-alikes such as "<|im_start|>" stay plain text.
  tokenize_special  [{text, ids}]  same with special=True: control tokens are parsed.
  greedy            one entry per chat:
    messages           the chat, [{role, content}]
    prompt             chat template from the GGUF metadata (tokenizer.chat_template)
                       rendered with jinja2 the way HF transformers' apply_chat_template does
                       (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks,
                       add_generation_prompt=True, bos_token/eos_token from the vocab)
    prompt_ids         llm.tokenize(prompt, add_bos=False, special=True)
    generated_ids      pure greedy decoding from llama.cpp's logits: argmax (ties -> lowest
                       id, numpy semantics) over the logits of the last position, feed the
                       token, repeat; 32 steps, or fewer if the model emits the EOS token
                       (id 2 = <|im_end|>), which is then the last element of the list.
    generated_text     llm.detokenize(generated_ids, special=False) as UTF-8 (the EOS
                       control token renders as nothing).
    first_step_top10   [[id, logit], ...] top-10 logits after the last prompt token, sorted by
                       logit descending (ties by id). Logits are float32 values written with
                       the shortest repr that round-trips through f32.
    margins            top1 - top2 logit at each generated step (same length as
                       generated_ids); a tiny margin means rill may legitimately pick the other
                       token there, so tests should only require agreement up to such a step.
"""
import hashlib
import json
import sys

import numpy as np

EXPECTED_VERSION = "0.3.36"
EXPECTED_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
GEN_STEPS = 32

TOKENIZE_CORPUS = [
    "",
    " ",
    "Hello",
    "Hello world",
    "Hello, world! How are you today?",
    "The quick brown fox jumps over the lazy dog.",
    " leading space",
    "trailing space ",
    "multiple   spaces   between     words",
    "    four leading spaces",
    "tab\tseparated\tvalues",
    "\t\tdouble tab indent",
    "line one\nline two",
    "\n\n\n",
    "windows\r\nline endings\r\n",
    "mixed \n \t \r\n whitespace  \n\n  end",
    "1234567890",
    "3.14159",
    "1,000,000",
    "2026-11-23",
    "The year 1999 had 365 days and 12 months.",
    "Café crème brûlée, naïve façade, señor, Ærø",
    "Straße, größer, Fußgänger",
    "你好，世界！我们今天学习机器学习。",
    "日本語のテキスト、カタカナとひらがな。",
    "안녕하세요, 세계!",
    "مرحبا بالعالم",
    "Привет, мир! Как дела?",
    "Emoji: 😀 🎉 👍🏽",
    "Family 👨‍👩‍👧‍👦 and flags 🇫🇷🇯🇵🇺🇸",
    "def add(a, b):\n    return a + b\n",
    "fn main() {\n    let x: Vec<u32> = vec![1, 2, 3];\n    println!(\"{:?}\", x);\n}",
    '{"name": "rill", "version": [0, 1, 0], "ok": true}',
    '<html><body><div class="x">Hi &amp; bye</div></body></html>',
    "don't won't can't I'm you're",
    "I'LL SEE YOU, THEY'VE GONE, WE'D",
    "they've we'll she's it'd",
    "https://example.com/path?query=1&lang=en#frag",
    "!!!???",
    "...",
    "Wait... what?! --- ok;;; (yes) [no] {maybe}",
    "<|im_start|>user hi<|im_end|>",
    "<|endoftext|>",
    "snake_case_identifier camelCaseIdentifier SCREAMING_CASE",
]

CHATML_EXAMPLE = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
)

TOKENIZE_SPECIAL_CORPUS = [
    CHATML_EXAMPLE,
    "<|im_start|>user hi<|im_end|>",
    "<|endoftext|>",
    "<|im_start|><|im_end|>",
    "text before<|im_end|>\ntext after",
    "plain text without control tokens",
    "<|im_start|>assistant\nCafé 😀<|im_end|>\n",
]

GREEDY_CHATS = [
    [{"role": "user", "content": "Say 'double bubble bath' ten times fast."}],
    [
        {"role": "system", "content": "You are a pirate. Answer every question like a pirate."},
        {"role": "user", "content": "How is the weather today?"},
    ],
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Write a Python function that returns the factorial of n."}],
    [
        {
            "role": "user",
            "content": "I am planning a trip to the mountains next week. The forecast says it "
            "will rain on Tuesday. What should I pack?",
        }
    ],
    [{"role": "user", "content": "Traduis en anglais : « Où est la bibliothèque ? » 📚"}],
    [
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello! How can I help you today?"},
        {"role": "user", "content": "Tell me a fun fact about octopuses."},
    ],
    [{"role": "user", "content": "Write a haiku about autumn."}],
    [{"role": "user", "content": "Name three primary colors."}],
    [{"role": "user", "content": "What is photosynthesis?"}],
    [{"role": "user", "content": "How do I boil an egg?"}],
    [{"role": "user", "content": "Good morning! How are you?"}],
    [
        {
            "role": "user",
            "content": "Tom has 5 apples and gives 2 to his sister. How many apples does he "
            "have left?",
        }
    ],
    [{"role": "user", "content": "Who wrote Romeo and Juliet?"}],
    [{"role": "user", "content": "Define the word 'ephemeral'."}],
    [{"role": "user", "content": "List five fruits that are red."}],
    [
        {"role": "system", "content": "You are a concise assistant. Answer in one sentence."},
        {"role": "user", "content": "Why is the sky blue?"},
    ],
    [{"role": "user", "content": "How many days are in a leap year?"}],
    [{"role": "user", "content": "Write a short thank-you note to a teacher."}],
    [{"role": "user", "content": "What is the difference between weather and climate?"}],
    [{"role": "user", "content": "How can I improve my sleep?"}],
    [
        {"role": "system", "content": "You are a friendly math tutor for kids."},
        {"role": "user", "content": "What is 7 times 8?"},
    ],
    [{"role": "user", "content": "What is the largest planet in our solar system?"}],
    [{"role": "user", "content": "Give me three tips for learning a new language."}],
    [{"role": "user", "content": "Explain what a noun is."}],
    [
        {
            "role": "user",
            "content": "A train travels 60 miles per hour for 3 hours. How far does it go?",
        }
    ],
    [{"role": "user", "content": "Write a limerick about a cat."}],
    [{"role": "user", "content": "¿Cuál es la capital de España?"}],
    [
        {"role": "system", "content": "You are a helpful chef."},
        {"role": "user", "content": "Suggest a quick vegetarian dinner."},
    ],
    [{"role": "user", "content": "What does CPU stand for?"}],
    [{"role": "user", "content": "How do I reverse a string in Python?"}],
    [
        {"role": "user", "content": "What is the boiling point of water?"},
        {"role": "assistant", "content": "Water boils at 100 degrees Celsius at sea level."},
        {"role": "user", "content": "And in Fahrenheit?"},
    ],
    [{"role": "user", "content": "Name the four seasons."}],
    [{"role": "user", "content": "Summarize the story of Cinderella in two sentences."}],
    [{"role": "user", "content": "What is gravity?"}],
    [{"role": "user", "content": "Thanks for your help!"}],
    [
        {"role": "system", "content": "You are a travel guide."},
        {"role": "user", "content": "What should I see in Paris? Je parle un peu français. 🗼"},
    ],
    [{"role": "user", "content": "If a pizza has 8 slices and I eat 3, how many are left?"}],
    [{"role": "user", "content": "Write a two-line poem about the ocean."}],
    [{"role": "user", "content": "What are the three states of matter?"}],
]


def f32(x):
    """A float32 logit as the shortest decimal that round-trips through f32."""
    return float(repr(np.float32(x)).replace("np.float32(", "").rstrip(")"))


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def render_chat(template, messages, bos_token, eos_token):
    """Render like transformers' apply_chat_template (utils/chat_template_utils.py)."""
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    import jinja2.ext

    def raise_exception(message):
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(
        messages=messages,
        add_generation_prompt=True,
        bos_token=bos_token,
        eos_token=eos_token,
    )


def top_k(logits, k):
    # sort by (-logit, id) so ties are deterministic
    order = np.lexsort((np.arange(len(logits)), -logits.astype(np.float64)))
    return [[int(i), f32(logits[i])] for i in order[:k]]


def main():
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} MODEL.gguf OUT.json")
    model_path, out_path = sys.argv[1], sys.argv[2]

    import llama_cpp
    from llama_cpp import Llama

    if llama_cpp.__version__ != EXPECTED_VERSION:
        sys.exit(f"need llama-cpp-python=={EXPECTED_VERSION}, have {llama_cpp.__version__}")
    digest = sha256(model_path)
    if digest != EXPECTED_SHA256:
        sys.exit(f"unexpected model sha256 {digest}")

    llm = Llama(
        model_path=model_path,
        logits_all=True,
        n_ctx=2048,
        n_threads=2,
        n_threads_batch=2,
        n_batch=512,
        seed=0,
        verbose=False,
    )
    meta = llm.metadata
    template = meta["tokenizer.chat_template"]
    eos_id = llm.token_eos()
    bos_id = llm.token_bos()
    # text of a control token (detokenize with special=True renders it)
    tok_text = lambda t: llm.detokenize([t], special=True).decode("utf-8")
    bos_token, eos_token = tok_text(bos_id), tok_text(eos_id)
    im_end = llm.tokenize(b"<|im_end|>", add_bos=False, special=True)
    assert len(im_end) == 1, im_end
    stop_ids = {eos_id, im_end[0]}

    def tok(text, special):
        return [int(t) for t in llm.tokenize(text.encode("utf-8"), add_bos=False, special=special)]

    out = {
        "generator": "scripts/llamacpp_reference.py",
        "llama_cpp_python_version": llama_cpp.__version__,
        "model_sha256": digest,
        "tokenize": [{"text": t, "ids": tok(t, False)} for t in TOKENIZE_CORPUS],
        "tokenize_special": [{"text": t, "ids": tok(t, True)} for t in TOKENIZE_SPECIAL_CORPUS],
        "greedy": [],
    }

    for messages in GREEDY_CHATS:
        prompt = render_chat(template, messages, bos_token, eos_token)
        prompt_ids = tok(prompt, True)
        llm.reset()
        llm.eval(prompt_ids)
        generated, margins, first_top10 = [], [], None
        for step in range(GEN_STEPS):
            logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            if step == 0:
                first_top10 = top_k(logits, 10)
            best = int(np.argmax(logits))
            top2 = np.partition(logits, -2)[-2:]
            margins.append(f32(np.float32(top2.max()) - np.float32(top2.min())))
            generated.append(best)
            if best in stop_ids:
                break
            llm.eval([best])
        text = llm.detokenize(generated, special=False).decode("utf-8", errors="replace")
        out["greedy"].append(
            {
                "messages": messages,
                "prompt": prompt,
                "prompt_ids": prompt_ids,
                "generated_ids": generated,
                "generated_text": text,
                "first_step_top10": first_top10,
                "margins": margins,
            }
        )

    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")

    # summary
    print(f"wrote {out_path}")
    print(f"  model sha256 {digest}  llama-cpp-python {llama_cpp.__version__}")
    print(f"  bos={bos_id} {bos_token!r} eos={eos_id} {eos_token!r} stop ids {sorted(stop_ids)}")
    print(f"  tokenize: {len(out['tokenize'])} strings, tokenize_special: {len(out['tokenize_special'])}")
    for g in out["greedy"]:
        m = min(g["margins"])
        print(
            f"  greedy: {len(g['prompt_ids'])} prompt + {len(g['generated_ids'])} generated,"
            f" min margin {m:.4f} at step {g['margins'].index(m)}:"
            f" {g['generated_text']!r}"
        )


if __name__ == "__main__":
    main()
