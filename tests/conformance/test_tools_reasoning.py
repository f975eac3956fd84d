"""Reasoning and tool-call streaming end to end, on the designed Qwen3 model whose greedy
output follows designed token sequences (scripts/models/designed_model.py, made by
scripts/designed_model.sh; `designed.json` lists the scenarios: a chat-template request, and the
designed `output_text`, e.g. `<think>\\n…\\n</think>\\n\\n<tool_call>\\n{…}\\n</tool_call><|im_end|>`).

Each scenario's chat-template request is turned into a Responses API request (messages →
input items, assistant tool calls → `function_call` items, tool messages →
`function_call_output` items, tools → Responses function tools, `enable_thinking` →
the request extension) and run greedily; the stream must pass the checker and hold
exactly the designed items: a `reasoning` item with the text between the think markers,
`function_call` items with the designed names and arguments (exactly as the model wrote
them), or a `message` with the answer. rill drops the layout whitespace next to markers
(the newline after `<think>`, the blank line after `</think>`), so texts are compared
with that whitespace stripped, and exactly. Further tests: forced calls (`tool_choice`
required and named), `parallel_tool_calls: false`, logprobs that never count reasoning or
marker tokens, cuts inside reasoning and inside a call, and golden event files
(tests/golden/designed_*.jsonl, compared field by field).

The model is found through RILL_DESIGNED_MODEL or ${RILL_CACHE:-~/.cache/rill}/tiny-models/designed-v1/
(scripts/designed_model.sh makes it); without it these tests FAIL. Marked `parsers`."""
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
        # The arguments exactly as written: the text of the "arguments" value.
        raw = body[body.index('"arguments":') + len('"arguments":'):body.rindex("}")].strip()
        items.append(("function_call", (call["name"], raw)))
    answer = TOOL_CALL.sub("", rest).replace(END, "").strip()
    if answer:
        items.append(("message", answer))
    return items


def actual_items(summary):
    """The same shape from a checked stream's terminal response."""
    out = []
    for it in summary.response["output"]:
        if it["type"] == "function_call":
            out.append(("function_call", (it["name"], it["arguments"])))
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


def weather_request(designed, **extra):
    """S1's request (tools offered, thinking on) with extra fields."""
    req = to_request(designed[S1])
    req.update(extra)
    return req


def test_forced_calls_skip_reasoning_and_stream_the_arguments(designed_engine, designed):
    want = [it for it in expected_items(designed[S1]["output_text"]) if it[0] == "function_call"]
    for choice in ("required", {"type": "function", "name": "get_weather"}):
        events, s = support.run(designed_engine, weather_request(designed, tool_choice=choice))
        assert actual_items(s) == want, choice
        assert s.response["tool_choice"] == choice
        # The forced start is prompt, not output: no reasoning, the arguments still stream.
        assert s.response["usage"]["output_tokens_details"]["reasoning_tokens"] == 0
        deltas = [e for e in events if e["type"] == "response.function_call_arguments.delta"]
        assert len(deltas) > 4


def test_parallel_tool_calls_false_ends_after_the_first_call(designed_engine, designed):
    _, full = support.run(designed_engine, weather_request(designed))
    _, s = support.run(designed_engine, weather_request(designed, parallel_tool_calls=False))
    assert [it.type for it in s.items] == ["reasoning", "function_call"]
    assert s.terminal_type == "response.completed"
    assert s.response["parallel_tool_calls"] is False
    assert s.items[1].done == full.items[1].done | {"id": s.items[1].done["id"],
                                                   "call_id": s.items[1].done["call_id"]}
    assert s.response["usage"]["output_tokens"] < full.response["usage"]["output_tokens"]


def test_logprobs_never_count_reasoning_or_marker_tokens(designed_engine, designed):
    req = to_request(designed[S3])
    req.update(include=["message.output_text.logprobs"], top_logprobs=2)
    _, s = support.run(designed_engine, req)
    tokens = designed[S3]["output_tokens"]
    answer = tokens[tokens.index("</think>") + 2:-1]  # after "</think>", "\n\n"; before <|im_end|>
    entries = s.items[1].done["content"][0]["logprobs"]
    assert [e["token"] for e in entries] == answer
    # Greedy: every answer token is its own best alternative.
    assert all(e["top_logprobs"][0]["token"] == e["token"] for e in entries)


def test_cut_inside_the_second_call_ends_it_incomplete(designed_engine, designed):
    tokens = designed[S1]["output_tokens"]
    cut = len(tokens) - 4  # inside the second call's arguments
    _, s = support.run(designed_engine, weather_request(designed, max_output_tokens=cut))
    assert [it.type for it in s.items] == ["reasoning", "function_call", "function_call"]
    assert [it.done["status"] for it in s.items] == ["completed", "completed", "incomplete"]
    assert s.terminal_type == "response.incomplete"
    partial = s.items[2].done["arguments"]
    assert partial and '{"timezone": "Europe/Paris"}'.startswith(partial), partial


def test_tools_on_a_model_without_a_tool_format_are_refused(lib):
    from rill_ctypes import RillError
    with Engine(lib, {"model": str(support.default_model()), "num_threads": 1}) as e:
        tool = {"type": "function", "name": "f", "parameters": {"type": "object"}}
        with pytest.raises(RillError) as err:
            e.submit({"input": "hi", "tools": [tool]})
        assert "tools" in str(err.value) and "tool-call format" in str(err.value)
        # tool_choice none leaves the tools out: accepted.
        events = e.stream({"input": "hi", "tools": [tool], "tool_choice": "none", "max_output_tokens": 2})
        assert events[-1]["response"]["tools"][0]["name"] == "f"


DESIGNED_GOLDEN = {
    "designed_think_then_two_calls": lambda d: to_request(d[S1]),
    "designed_round_trip": lambda d: to_request(d[S2]),
    "designed_reasoning_logprobs": lambda d: to_request(d[S3]) | {
        "include": ["message.output_text.logprobs"], "top_logprobs": 1},
    "designed_named_call": lambda d: weather_request(
        d, tool_choice={"type": "function", "name": "get_weather"}, parallel_tool_calls=False),
}


@pytest.fixture(scope="module")
def designed_golden_engine(lib, designed):
    """Without prefix caching, so `cached_tokens` does not depend on earlier tests."""
    config = {"model": str(designed_dir()), "num_threads": 2, "enable_prefix_caching": False}
    with Engine(lib, config) as e:
        yield e


@pytest.mark.parametrize("name", sorted(DESIGNED_GOLDEN))
def test_designed_golden_stream(designed_golden_engine, designed, update_golden, name):
    events, _ = support.run(designed_golden_engine, DESIGNED_GOLDEN[name](designed))
    golden = pathlib.Path(__file__).resolve().parents[1] / "golden" / f"{name}.jsonl"
    support.compare_golden(golden, events, update_golden)


def test_parsers_are_detected_and_can_be_turned_off(lib, designed):
    with Engine(lib, {"model": str(designed_dir()), "num_threads": 1}) as e:
        stats = e.stats()
        assert (stats["reasoning_parser"], stats["tool_call_parser"]) == ("think", "hermes")
    config = {"model": str(designed_dir()), "num_threads": 1, "reasoning_parser": "none"}
    with Engine(lib, config) as e:
        assert e.stats()["reasoning_parser"] == "none"
        events = e.stream(to_request(designed[S3]))
        # The block is then answer text, as the model wrote it.
        final = events[-1]["response"]
        assert [it["type"] for it in final["output"]] == ["message"]
        assert support.message_text(final) == designed[S3]["output_text"].removesuffix(END)
        assert final["usage"]["output_tokens_details"]["reasoning_tokens"] == 0
