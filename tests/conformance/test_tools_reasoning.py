"""Reasoning and tool-call streaming end to end, on the designed Qwen3 model whose greedy
output follows designed token sequences (scripts/models/designed_model.py in the
`designed` work; `designed.json` lists the scenarios: a chat-template request, and the
designed `output_text`, e.g. `<think>\\n…\\n</think>\\n\\n<tool_call>\\n{…}\\n</tool_call><|im_end|>`).

Each scenario's chat-template request is turned into a Responses API request (messages →
input items, assistant tool calls → `function_call` items, tool messages →
`function_call_output` items, tools → Responses function tools, `enable_thinking` →
the request extension) and run greedily; the stream must pass the checker and hold
exactly the designed items: a `reasoning` item with the text between the think markers,
`function_call` items with the designed names and arguments (compared as JSON), or a
`message` with the answer. Whitespace right next to a marker is not pinned by the spec,
so texts are compared with surrounding whitespace stripped.

The model is found through RILL_DESIGNED_MODEL or ${RILL_CACHE:-~/.cache/rill}/tiny-models/designed-v1/;
without it these tests FAIL. Marked `parsers`: deselect with -m "not parsers" until
rill's tool-call and reasoning parsers land."""
import json
import os
import pathlib
import re

import pytest

import support
from rill_ctypes import Engine

pytestmark = pytest.mark.parsers

S1, S2, S3 = "think_then_two_calls", "answer_after_tool_results", "think_then_answer"
THINK = re.compile(r"^\s*<think>(.*?)</think>", re.S)
TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.S)
END = "<|im_end|>"


def designed_dir():
    """RILL_DESIGNED_MODEL, else the cached designed-v1 directory."""
    env = os.environ.get("RILL_DESIGNED_MODEL")
    return pathlib.Path(env) if env else support.cache_dir() / "tiny-models" / "designed-v1"


@pytest.fixture(scope="module")
def designed():
    """designed.json's scenarios by name; fails (does not skip) when the model is missing."""
    path = designed_dir() / "designed.json"
    if not path.exists():
        pytest.fail(f"designed model missing: {path} not found. Make it with the designed-model "
                    "generator (scripts/models/designed_model.py, cached under "
                    "${RILL_CACHE:-~/.cache/rill}/tiny-models/designed-v1/) or set RILL_DESIGNED_MODEL; "
                    'deselect these tests with -m "not parsers" until the parsers land.')
    doc = json.loads(path.read_text(encoding="utf-8"))
    scenarios = {sc["name"]: sc for sc in doc["scenarios"]}
    missing = {S1, S2, S3} - set(scenarios)
    if missing:
        pytest.fail(f"{path}: scenarios {sorted(missing)} missing (has {sorted(scenarios)})")
    return scenarios


@pytest.fixture(scope="module")
def designed_engine(lib, designed):
    with Engine(lib, {"model": str(designed_dir()), "num_threads": 2}) as e:
        yield e


# ---- chat-template request -> Responses request -------------------------------------------

def responses_tool(tool):
    """A chat-template tool ({type, function: {...}}) as a Responses function tool."""
    fn = tool["function"]
    return {"type": "function", "name": fn["name"], "description": fn.get("description", ""),
            "parameters": fn["parameters"]}


def input_items(messages):
    """Chat messages as Responses input items; tool results take the call_id of the
    assistant's tool calls in order."""
    items, call_ids = [], []
    for m in messages:
        if m["role"] == "tool":
            items.append({"type": "function_call_output", "call_id": call_ids.pop(0), "output": m["content"]})
            continue
        if m.get("content"):
            items.append({"role": m["role"], "content": m["content"]})
        for call in m.get("tool_calls") or []:
            fn = call["function"]
            call_ids.append(f"call_designed{len(items)}")
            args = fn["arguments"] if isinstance(fn["arguments"], str) else json.dumps(fn["arguments"])
            items.append({"type": "function_call", "call_id": call_ids[-1], "name": fn["name"], "arguments": args})
    return items


def to_request(scenario, max_output_tokens=None):
    """The scenario's request as a greedy Responses API request."""
    chat = scenario["request"]
    req = {"input": input_items(chat["messages"]), "temperature": 0,
           "max_output_tokens": max_output_tokens or len(scenario["output_ids"]) + 16}
    if chat.get("tools"):
        req["tools"] = [responses_tool(t) for t in chat["tools"]]
    thinking = (chat.get("chat_template_kwargs") or {}).get("enable_thinking")
    if thinking is not None:
        req["enable_thinking"] = thinking
    return req


# ---- designed output -> expected items ---------------------------------------------------

def expected_items(output_text):
    """[(type, value)]: ("reasoning", text), ("function_call", (name, arguments dict)),
    ("message", text), parsed from the designed output text."""
    items, rest = [], output_text
    m = THINK.match(rest)
    if m:
        items.append(("reasoning", m[1].strip()))
        rest = rest[m.end():]
    for body in TOOL_CALL.findall(rest):
        call = json.loads(body)
        items.append(("function_call", (call["name"], call["arguments"])))
    answer = TOOL_CALL.sub("", rest).replace(END, "").strip()
    if answer:
        items.append(("message", answer))
    return items


def actual_items(summary):
    """The same shape from a checked stream's terminal response."""
    out = []
    for it in summary.response["output"]:
        if it["type"] == "function_call":
            out.append(("function_call", (it["name"], json.loads(it["arguments"]))))
        else:
            out.append((it["type"], "".join(p["text"] for p in it["content"]).strip()))
    return out


def run_scenario(engine, scenario, **kw):
    request = to_request(scenario, **kw)
    _, summary = support.run(engine, request)
    return summary


# ---- the scenarios ----------------------------------------------------------------------

def test_s1_reasoning_then_two_function_calls(designed_engine, designed):
    s = run_scenario(designed_engine, designed[S1])
    assert actual_items(s) == expected_items(designed[S1]["output_text"])
    assert [it.type for it in s.items] == ["reasoning", "function_call", "function_call"]
    assert s.terminal_type == "response.completed"
    calls = [it.done for it in s.items[1:]]
    assert len({c["call_id"] for c in calls}) == 2, "each call has its own call_id"
    usage = s.response["usage"]
    assert 0 < usage["output_tokens_details"]["reasoning_tokens"] < usage["output_tokens"]


def test_s2_round_trip_without_thinking(designed_engine, designed):
    s = run_scenario(designed_engine, designed[S2])
    assert actual_items(s) == expected_items(designed[S2]["output_text"])
    assert [it.type for it in s.items] == ["message"]
    assert s.terminal_type == "response.completed"
    assert s.response["usage"]["output_tokens_details"]["reasoning_tokens"] == 0


def test_s3_reasoning_then_answer(designed_engine, designed):
    s = run_scenario(designed_engine, designed[S3])
    assert actual_items(s) == expected_items(designed[S3]["output_text"])
    assert [it.type for it in s.items] == ["reasoning", "message"]
    assert s.terminal_type == "response.completed"
    assert s.response["usage"]["output_tokens_details"]["reasoning_tokens"] > 0


def test_s1_cut_inside_reasoning(designed_engine, designed):
    tokens = designed[S1]["output_tokens"]
    cut = max(2, tokens.index("</think>") // 2)  # <think> and some reasoning tokens
    s = run_scenario(designed_engine, designed[S1], max_output_tokens=cut)
    assert s.terminal_type == "response.incomplete"
    assert s.response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert [it.type for it in s.items] == ["reasoning"]
    assert s.items[0].done["status"] == "incomplete"
    text = s.items[0].parts[0].text
    want = "".join(tokens[1:cut])  # the reasoning tokens generated before the cut
    assert text.strip() and text.strip() == want.strip(), (text, want)
    usage = s.response["usage"]
    assert usage["output_tokens"] == cut
    assert 0 < usage["output_tokens_details"]["reasoning_tokens"] <= cut
