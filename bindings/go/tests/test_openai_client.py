"""OpenAI's official Python client against rill-server (bindings/go/cmd/rill-server).

test.sh starts the server and sets RILL_SERVER_URL (http://127.0.0.1:PORT) and
RILL_MODEL (the GGUF path; its file stem is the model name).
"""

import json
import os
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest
from openai import OpenAI
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseCreatedEvent,
    ResponseInProgressEvent,
    ResponseTextDeltaEvent,
    ResponseTextDoneEvent,
)

SERVER = os.environ["RILL_SERVER_URL"].rstrip("/")
MODEL = Path(os.environ["RILL_MODEL"]).stem
QUESTION = "Name the capital of France."
TERMINAL = {"response.completed", "response.incomplete", "response.failed"}


@pytest.fixture(scope="module")
def client():
    c = OpenAI(
        base_url=SERVER + "/v1",
        api_key="x",
        _strict_response_validation=True,
        max_retries=0,
        timeout=180,
    )
    yield c
    c.close()


def get_stats():
    with urllib.request.urlopen(SERVER + "/stats", timeout=30) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("application/json")
        return json.loads(r.read())


def check_stream_events(events):
    """The invariants of every stream; returns the concatenated text deltas."""
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"], types
    assert isinstance(events[0], ResponseCreatedEvent)
    assert isinstance(events[1], ResponseInProgressEvent)
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert sum(t in TERMINAL for t in types) == 1, types
    assert types[-1] in TERMINAL, types
    ids = {e.response.id for e in events if hasattr(e, "response")}
    assert len(ids) == 1, ids
    return "".join(e.delta for e in events if isinstance(e, ResponseTextDeltaEvent))


def test_create_stream(client):
    stream = client.responses.create(
        model=MODEL, input=QUESTION, temperature=0, max_output_tokens=32, stream=True
    )
    assert stream.response.status_code == 200
    assert stream.response.headers["content-type"].startswith("text/event-stream")
    assert stream.response.headers["cache-control"] == "no-cache"
    events = list(stream)
    text = check_stream_events(events)
    assert "Paris" in text
    last = events[-1]
    assert isinstance(last, ResponseCompletedEvent), last.type
    assert last.response.status == "completed"
    assert last.response.output[0].content[0].text == text
    assert last.response.output_text == text
    assert last.response.model == MODEL
    assert last.response.usage is not None and last.response.usage.output_tokens > 0
    done = [e for e in events if isinstance(e, ResponseTextDoneEvent)]
    assert len(done) == 1 and done[0].text == text


def test_stream_helper_final_response(client):
    with client.responses.stream(
        model=MODEL, input=QUESTION, temperature=0, max_output_tokens=32
    ) as stream:
        deltas = []
        types = []
        for event in stream:
            types.append(event.type)
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = stream.get_final_response()
    assert types[0] == "response.created" and types[-1] == "response.completed", types
    assert isinstance(final, Response)
    assert final.status == "completed"
    assert final.output_text == "".join(deltas)
    assert "Paris" in final.output_text


def test_non_streaming(client):
    before = get_stats()["requests"]["completed"]
    resp = client.responses.create(
        model=MODEL, input=QUESTION, temperature=0, max_output_tokens=32
    )
    assert isinstance(resp, Response)
    assert resp.object == "response" and resp.id.startswith("resp_")
    assert resp.status == "completed"
    assert "Paris" in resp.output_text
    assert resp.model == MODEL
    assert resp.usage.input_tokens > 0 and resp.usage.output_tokens > 0
    assert get_stats()["requests"]["completed"] == before + 1


def test_non_streaming_incomplete(client):
    resp = client.responses.create(
        model=MODEL, input="Count to one hundred.", max_output_tokens=4,
        extra_body={"ignore_eos": True},
    )
    assert resp.status == "incomplete"
    assert resp.incomplete_details.reason == "max_output_tokens"
    assert resp.usage.output_tokens == 4


def test_model_names(client):
    # The model's general.name is accepted as well as the file stem, and so is no model.
    general_name = get_stats()["model_name"]
    resp = client.responses.create(model=general_name, input="Say hello.", max_output_tokens=4)
    assert resp.status in ("completed", "incomplete")
    resp = client.responses.create(input="Say hello.", max_output_tokens=4)
    assert resp.status in ("completed", "incomplete")
    assert resp.model == MODEL


@pytest.mark.parametrize(
    "kwargs, param, words",
    [
        ({"input": ""}, "input", "must not be empty"),
        ({"input": "x", "extra_body": {"colour": 1}}, "colour", "unknown parameter"),
        ({"input": "x", "model": "gpt-nope"}, "model", "gpt-nope"),
        ({"input": "x", "max_output_tokens": 4, "temperature": 7}, "temperature", "temperature"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_bad_request(client, kwargs, param, words, stream):
    kwargs = dict(kwargs)
    kwargs.setdefault("model", MODEL)
    before = get_stats()["requests"]["submitted"]
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(stream=stream, **kwargs)
    err = info.value
    assert err.status_code == 400
    assert err.type == "invalid_request_error"
    assert err.param == param
    assert err.code is None
    assert words in err.message
    assert set(err.body) == {"message", "type", "param", "code"}
    assert get_stats()["requests"]["submitted"] == before  # nothing was queued


def test_bad_json_body():
    req = urllib.request.Request(
        SERVER + "/v1/responses", data=b"{not json", method="POST",
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=30)
    assert info.value.code == 400
    body = json.loads(info.value.read())
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["param"] is None and body["error"]["code"] is None
    assert "JSON" in body["error"]["message"]


def test_concurrent_streams(client):
    results = [None] * 3
    errors = []

    def run(i):
        try:
            stream = client.responses.create(
                model=MODEL, input=QUESTION, temperature=0, max_output_tokens=16,
                stream=True, extra_body={"ignore_eos": True},
            )
            results[i] = list(stream)
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert not errors, errors
    for events in results:
        text = check_stream_events(events)
        assert events[-1].type == "response.incomplete"
        assert events[-1].response.incomplete_details.reason == "max_output_tokens"
        assert events[-1].response.output_text == text


def test_client_disconnect_cancels(client):
    before = get_stats()["requests"]
    stream = client.responses.create(
        model=MODEL, input="Tell me a very long story.", stream=True,
        extra_body={"ignore_eos": True},
    )
    seen = []
    for event in stream:
        seen.append(event.type)
        if seen.count("response.output_text.delta") >= 3:
            break
    stream.close()
    assert seen[0] == "response.created" and not (set(seen) & TERMINAL)

    deadline = time.monotonic() + 30
    while True:
        now = get_stats()
        if now["requests"]["cancelled"] > before["cancelled"]:
            break
        assert time.monotonic() < deadline, f"request not cancelled: before {before}, now {now}"
        time.sleep(0.1)
    assert now["requests"]["cancelled"] == before["cancelled"] + 1
    assert now["requests"]["submitted"] == before["submitted"] + 1
    assert_generation_stopped()


def assert_generation_stopped():
    """rill generates no more tokens (a cancelled ignore_eos request would run forever).
    requests.running is not checked: rill refreshes that gauge only when a step runs."""
    time.sleep(0.3)
    generated = get_stats()["tokens"]["generated"]
    time.sleep(0.7)
    assert get_stats()["tokens"]["generated"] == generated


def test_client_timeout_cancels_non_streaming(client):
    # A non-streaming request writes nothing until the end: only the request context
    # can tell the server that the client left.
    before = get_stats()["requests"]
    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=1.5).responses.create(
            model=MODEL, input="Tell me a very long story.", extra_body={"ignore_eos": True}
        )
    deadline = time.monotonic() + 30
    while get_stats()["requests"]["cancelled"] == before["cancelled"]:
        assert time.monotonic() < deadline, "request not cancelled after the client left"
        time.sleep(0.1)
    now = get_stats()["requests"]
    assert now["cancelled"] == before["cancelled"] + 1
    assert now["submitted"] == before["submitted"] + 1
    assert_generation_stopped()


def test_not_found_and_method():
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(SERVER + "/v1/nope", timeout=30)
    assert info.value.code == 404
    assert json.loads(info.value.read())["error"]["type"] == "invalid_request_error"
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(SERVER + "/v1/responses", timeout=30)
    assert info.value.code == 405
