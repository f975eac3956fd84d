#!/usr/bin/env python3
"""Reference renderings of chat templates by Python's jinja2, configured exactly as
transformers' `apply_chat_template` configures it (transformers 4.57.1,
`utils/chat_template_utils.py`: `_compile_jinja_template` and `render_jinja_template`):
an ImmutableSandboxedEnvironment with trim_blocks, lstrip_blocks, the loopcontrols
extension and the `{% generation %}` tag, its own `tojson` filter (json.dumps, no HTML escaping), and the globals
`raise_exception` and `strftime_now`. Rendering gets `messages`, `tools`, `documents`
(None), `add_generation_prompt`, then the template kwargs (`bos_token`, `eos_token`,
and `enable_thinking` only where a case sets it).

Inputs: tests/fixtures/templates/conversations.json (the cases) and four templates:
  qwen3   tokenizer_config.json of the Qwen3 tokenizer (scripts/fetch_tokenizers.sh)
  llama3  tokenizer_config.json of the Llama 3 tokenizer (scripts/fetch_tokenizers.sh)
  chatml  `tokenizer.chat_template` of the default model GGUF (read with gguf-py)
  helpers tests/fixtures/templates/helpers.jinja (exercises tojson options, string
          methods, loop controls, namespace, slicing, value printing, raise_exception)
Output: tests/fixtures/templates/expected.json with each template's source and special
tokens, and for every (template, case) either the rendered text or the error jinja2
raised (type and message). tests/chat_templates.rs renders the same cases with rill's
ChatTemplate and requires byte-identical text, or an error where jinja2 raised one.

Rerun (python3.11 with jinja2==3.1.6 and gguf==0.19.0, see tests/requirements-models.txt):
  python3 scripts/models/template_reference.py \
      --tokenizers "$(scripts/fetch_tokenizers.sh)" \
      --gguf models/SmolLM2-135M-Instruct.Q4_1.gguf
"""

import argparse
import json
from datetime import datetime
from pathlib import Path

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "templates"


class GenerationTag(Extension):
    """transformers' AssistantTracker as apply_chat_template uses it when not asked for an
    assistant mask: `{% generation %}...{% endgeneration %}` renders its body unchanged."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

    def _body(self, caller):
        return caller()


def compile_template(source):
    """transformers' _compile_jinja_template."""

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(
            x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
        )

    def strftime_now(format):
        return datetime.now().strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTag, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env.from_string(source)


def render(template, case, bos_token, eos_token):
    """transformers' render_jinja_template for one conversation."""
    kwargs = {"bos_token": bos_token, "eos_token": eos_token}
    if "enable_thinking" in case:
        kwargs["enable_thinking"] = case["enable_thinking"]
    return template.render(
        messages=case["messages"],
        tools=case.get("tools"),
        documents=None,
        add_generation_prompt=case["add_generation_prompt"],
        **kwargs,
    )


def gguf_template(path):
    from gguf import GGUFReader

    reader = GGUFReader(path)

    def field(key):
        f = reader.fields[key]
        return f.parts[f.data[0]]

    tokens = reader.fields["tokenizer.ggml.tokens"]
    token = lambda i: bytes(tokens.parts[tokens.data[i]]).decode()
    return (
        bytes(field("tokenizer.chat_template")).decode(),
        token(int(field("tokenizer.ggml.bos_token_id")[0])),
        token(int(field("tokenizer.ggml.eos_token_id")[0])),
    )


def hf_template(path):
    config = json.loads(Path(path).read_text())
    return config["chat_template"], config.get("bos_token") or "", config.get("eos_token") or ""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokenizers", required=True, help="the directory scripts/fetch_tokenizers.sh prints")
    ap.add_argument("--gguf", required=True, help="the default model GGUF (ChatML template)")
    ap.add_argument("--out", default=str(FIXTURES / "expected.json"))
    ap.add_argument(
        "--extra-template",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="also render FILE (a Jinja template) as NAME, with empty bos/eos tokens; for local"
        " checks of other templates (templates calling strftime_now depend on the date)",
    )
    args = ap.parse_args()

    templates = {
        "qwen3": hf_template(Path(args.tokenizers) / "qwen3" / "tokenizer_config.json"),
        "llama3": hf_template(Path(args.tokenizers) / "llama3" / "tokenizer_config.json"),
        "chatml": gguf_template(args.gguf),
        "helpers": ((FIXTURES / "helpers.jinja").read_text(), "<s>", "</s>"),
    }
    for extra in args.extra_template:
        name, _, path = extra.partition("=")
        templates[name] = (Path(path).read_text(), "", "")
    cases = json.loads((FIXTURES / "conversations.json").read_text())["cases"]
    out = {
        "generator": "scripts/models/template_reference.py",
        "jinja2": jinja2.__version__,
        "templates": {},
        "results": [],
    }
    for name, (source, bos, eos) in templates.items():
        out["templates"][name] = {"source": source, "bos_token": bos, "eos_token": eos}
        compiled = compile_template(source)
        for case in cases:
            result = {"template": name, "case": case["name"]}
            try:
                result["output"] = render(compiled, case, bos, eos)
            except Exception as e:  # the template raised: record what and why
                result["error_type"] = type(e).__name__
                result["error"] = str(e)
            out["results"].append(result)
    Path(args.out).write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n")
    errors = sum("error" in r for r in out["results"])
    print(f"wrote {args.out}: {len(out['results'])} renderings, {errors} errors")


if __name__ == "__main__":
    main()
