"""OpenAI's official Python client (strict response validation) against rill-server on
the designed Qwen3 model: reasoning and function calls stream as typed events the client
itself accumulates, and a second turn with the calls' outputs gets the answer.

test.sh starts the server and sets RILL_SERVER_URL and RILL_DESIGNED_MODEL (the model
directory; its designed.json holds the tools and the designed outputs). The model's
greedy output is designed for these exact conversations (scripts/models/designed_model.py):
reasoning then get_weather(Paris) and get_time(Europe/Paris); after the results, with
thinking off, one sentence.
"""

import json
import os
from pathlib import Path

import pytest
from openai import OpenAI
from openai.types.responses import (
    ResponseFunctionCallArgumentsDeltaEvent,
    ResponseFunctionCallArgumentsDoneEvent,
    ResponseFunctionToolCall,
    ResponseReasoningItem,
    ResponseReasoningTextDeltaEvent,
)

SERVER = os.environ["RILL_SERVER_URL"].rstrip("/")
DESIGNED = Path(os.environ["RILL_DESIGNED_MODEL"])
MODEL = DESIGNED.name
SCENARIOS = {s["name"]: s for s in json.loads((DESIGNED / "designed.json").read_text())["scenarios"]}
FIRST = SCENARIOS["think_then_two_calls"]
SECOND = SCENARIOS["answer_after_tool_results"]
QUESTION = FIRST["request"]["messages"][0]["content"]
# The chat-template tools as Responses function tools.
TOOLS = [{"type": "function", "name": t["function"]["name"], "description": t["function"]["description"],
          "parameters": t["function"]["parameters"]} for t in FIRST["request"]["tools"]]
RESULTS = [m["content"] for m in SECOND["request"]["messages"] if m["role"] == "tool"]


@pytest.fixture(scope="module")
def client():
    c = OpenAI(base_url=SERVER + "/v1", api_key="x", _strict_response_validation=True,
               max_retries=0, timeout=180)
    yield c
    c.close()


def first_turn(client, **kw):
    return dict(model=MODEL, input=QUESTION, tools=TOOLS, temperature=0, max_output_tokens=80, **kw)


def test_streamed_reasoning_and_calls_are_typed_events(client):
    events = list(client.responses.create(stream=True, **first_turn(client)))
    reasoning = "".join(e.delta for e in events if isinstance(e, ResponseReasoningTextDeltaEvent))
    assert reasoning == "I need the weather and the time."
    deltas = [e for e in events if isinstance(e, ResponseFunctionCallArgumentsDeltaEvent)]
    done = [e for e in events if isinstance(e, ResponseFunctionCallArgumentsDoneEvent)]
    assert [(d.name, json.loads(d.arguments)) for d in done] == [
        ("get_weather", {"city": "Paris"}), ("get_time", {"timezone": "Europe/Paris"})]
    for d in done:  # every done carries what its deltas streamed
        assert d.arguments == "".join(x.delta for x in deltas if x.item_id == d.item_id)
    final = events[-1].response
    assert final.status == "completed"
    assert [type(i) for i in final.output] == [ResponseReasoningItem, ResponseFunctionToolCall,
                                               ResponseFunctionToolCall]
    assert final.usage.output_tokens_details.reasoning_tokens > 0


def test_the_clients_stream_helper_accumulates_the_same_response(client):
    with client.responses.stream(**first_turn(client)) as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    calls = [i for i in final.output if i.type == "function_call"]
    assert [(c.name, c.arguments) for c in calls] == [
        ("get_weather", '{"city": "Paris"}'), ("get_time", '{"timezone": "Europe/Paris"}')]
    assert all(c.call_id.startswith("call_") and c.status == "completed" for c in calls)


def test_round_trip_with_the_call_outputs(client):
    first = client.responses.create(**first_turn(client))
    calls = [i for i in first.output if i.type == "function_call"]
    assert len(calls) == 2
    items = [{"role": "user", "content": QUESTION}]
    items += [{"type": "function_call", "call_id": c.call_id, "name": c.name, "arguments": c.arguments}
              for c in calls]
    items += [{"type": "function_call_output", "call_id": c.call_id, "output": out}
              for c, out in zip(calls, RESULTS)]
    second = client.responses.create(model=MODEL, input=items, tools=TOOLS, temperature=0,
                                     max_output_tokens=40, extra_body={"enable_thinking": False})
    assert second.status == "completed"
    assert [i.type for i in second.output] == ["message"]
    want = SECOND["output_text"].removesuffix("<|im_end|>")
    assert second.output_text == want


def test_tool_choice_named_and_parallel_calls_off(client):
    r = client.responses.create(tool_choice={"type": "function", "name": "get_weather"},
                                parallel_tool_calls=False, **first_turn(client))
    assert [(i.type, getattr(i, "name", None)) for i in r.output] == [("function_call", "get_weather")]
    assert r.tool_choice.name == "get_weather" and r.parallel_tool_calls is False


def test_strict_tools_are_a_400(client):
    import openai
    strict = [dict(TOOLS[0], strict=True)]
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model=MODEL, input=QUESTION, tools=strict)
    assert "strict" in str(err.value)
