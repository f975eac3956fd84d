"""End-to-end conformance of rill's Responses API streams through the C API (ctypes), on
the default model (SmolLM2-135M-Instruct, greedy): every stream is checked by
invariants.check_stream (OpenAI's types plus invariants 1-11), and each test asserts
what its request is about (instructions, multi-turn input, token-limit cut, cancel,
logprobs, stop strings, concurrency, non-streaming generate, refusals at submit)."""
import threading

import pytest

from rill_ctypes import STATUS, RillError
from support import message_text, normalise, run, differences
from invariants import check_stream

CAPITAL = {"input": "Name the capital of France.", "temperature": 0, "max_output_tokens": 32}
MULTI_BYTE = "Write the word café and the Chinese for hello."
LOGPROBS = "message.output_text.logprobs"


def user(text):
    """A user message item with one input_text part."""
    return {"role": "user", "content": [{"type": "input_text", "text": text}]}


def assistant_output(text):
    """A replayed assistant message output item, as a previous response returned it."""
    return {"type": "message", "id": "msg_earlier", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}


def only_message(summary):
    """The one message item of a text-only response."""
    assert [it.type for it in summary.items] == ["message"]
    return summary.items[0]


# ---- plain requests ---------------------------------------------------------------------

def test_plain_string_input(engine):
    _, s = run(engine, CAPITAL)
    assert s.terminal_type == "response.completed"
    assert only_message(s).done["status"] == "completed"
    assert "Paris" in message_text(s.response)
    assert s.response["max_output_tokens"] == 32 and s.response["temperature"] == 0


def test_instructions_are_echoed_and_used(engine):
    req = {**CAPITAL, "instructions": "Answer in one short sentence."}
    _, s = run(engine, req)
    _, plain = run(engine, CAPITAL)
    assert s.response["instructions"] == req["instructions"]
    assert s.response["usage"]["input_tokens"] != plain.response["usage"]["input_tokens"]


def test_multi_turn_input_items(engine):
    req = {"input": [user("My name is Ada."), assistant_output("Nice to meet you, Ada!"), user("What is my name?")],
           "temperature": 0, "max_output_tokens": 16}
    _, s = run(engine, req)
    only_message(s)
    assert "Ada" in message_text(s.response)
    _, last_turn = run(engine, {**req, "input": [user("What is my name?")]})
    assert s.response["usage"]["input_tokens"] > last_turn.response["usage"]["input_tokens"] + 10


def test_token_limit_cut(engine):
    _, s = run(engine, {**CAPITAL, "max_output_tokens": 3})
    assert s.terminal_type == "response.incomplete"
    assert s.response["status"] == "incomplete"
    assert s.response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert only_message(s).done["status"] == "incomplete"
    assert s.response["usage"]["output_tokens"] == 3


def test_stop_string(engine):
    _, full = run(engine, CAPITAL)
    _, s = run(engine, {**CAPITAL, "stop": ["Paris"]})
    text, whole = message_text(s.response), message_text(full.response)
    assert s.terminal_type == "response.completed"
    assert "Paris" not in text and text == whole[:whole.index("Paris")]


def test_cached_tokens_are_the_prefix_cache_hits(engine):
    run(engine, CAPITAL)  # its full prompt blocks are cached from here on
    before = engine.stats()["tokens"]["cached_prompt"]
    _, s = run(engine, CAPITAL)
    cached = s.response["usage"]["input_tokens_details"]["cached_tokens"]
    assert 0 < cached <= s.response["usage"]["input_tokens"]
    assert engine.stats()["tokens"]["cached_prompt"] - before == cached


# ---- cancel -------------------------------------------------------------------------------

LONG = {"input": "Tell me a long story about a dragon.", "temperature": 0, "max_output_tokens": 400,
        "ignore_eos": True}


def assert_cancelled(events, request):
    s = check_stream(events, request)
    assert s.terminal_type == "response.incomplete" and s.response["status"] == "cancelled"
    assert s.response["incomplete_details"] is None
    assert s.response["usage"]["output_tokens"] < request["max_output_tokens"]
    if s.items:
        assert s.items[-1].done["status"] == "incomplete"
    return s


def test_cancel_polled_mid_stream(engine):
    before = engine.stats()["requests"]["cancelled"]
    rid = engine.submit(LONG)
    events = []
    for e in engine.events(rid):
        events.append(e)
        if e["type"] == "response.output_text.delta" and len(events) == 6:
            engine.cancel(rid)
    s = assert_cancelled(events, LONG)
    assert s.items, "cancelled after some text: the message item is in the output"
    assert engine.stats()["requests"]["cancelled"] == before + 1
    engine.cancel(rid)  # already finished: a no-op


def test_cancel_from_callback(engine):
    events, finished = [], threading.Event()

    def on_event(rid, event, is_last):
        events.append(event)
        if event["type"] == "response.output_text.delta" and event["sequence_number"] == 5:
            engine.cancel(rid)
        if is_last:
            finished.set()

    engine.submit(LONG, on_event)
    assert finished.wait(60), "no terminal event within 60 s"
    assert_cancelled(events, LONG)  # exactly one terminal event, last


def test_cancel_unknown_id_is_refused(engine):
    with pytest.raises(RillError) as err:
        engine.cancel(987654321)
    assert err.value.code == STATUS["UNKNOWN_REQUEST"]


# ---- logprobs -------------------------------------------------------------------------------

@pytest.mark.parametrize("top_n", [0, 5])
@pytest.mark.parametrize("prompt", [MULTI_BYTE, "Say hello in Chinese characters."])
def test_logprobs(engine, top_n, prompt):
    req = {"input": prompt, "temperature": 0, "max_output_tokens": 16, "top_logprobs": top_n,
           "include": [LOGPROBS]}
    _, s = run(engine, req)
    part = only_message(s).done["content"][0]
    assert any(ord(c) > 127 for c in part["text"]), f"no multi-byte text in {part['text']!r}"
    entries = part["logprobs"]
    assert len(entries) == s.response["usage"]["output_tokens"]  # cut at 16: no end-of-turn token
    for x in entries:
        assert len(x["top_logprobs"]) == top_n
        if top_n:  # greedy: the chosen token is the most likely one
            assert x["logprob"] == x["top_logprobs"][0]["logprob"]
    assert s.response["top_logprobs"] == top_n


def test_no_logprobs_unless_included(engine):
    _, s = run(engine, {**CAPITAL, "top_logprobs": 5})
    assert only_message(s).done["content"][0]["logprobs"] == []


# ---- concurrency ----------------------------------------------------------------------------

PROMPTS = ["Name a fruit.", "What is 2 + 2?", "Name a colour.", "Say hi."]


def test_concurrent_requests(engine):
    reqs = [{"input": p, "temperature": 0, "max_output_tokens": 12} for p in PROMPTS]
    alone = [message_text(run(engine, r)[1].response) for r in reqs]
    streams, lock, finished = {}, threading.Lock(), threading.Semaphore(0)

    def on_event(rid, event, is_last):
        with lock:
            streams.setdefault(rid, []).append(event)
        if is_last:
            finished.release()

    cb_ids = [engine.submit(r, on_event) for r in reqs[:2]]
    polled_ids = [engine.submit(r) for r in reqs[2:]]
    polled = {rid: list(engine.events(rid)) for rid in polled_ids}
    for _ in cb_ids:
        assert finished.acquire(timeout=60), "a callback request did not finish"
    for req, rid, want in zip(reqs, cb_ids + polled_ids, alone):
        s = check_stream(streams.get(rid) or polled[rid], req)
        assert message_text(s.response) == want, "batched greedy output differs from alone"
    assert len({s[0]["response"]["id"] for s in [*streams.values(), *polled.values()]}) == 4


# ---- non-streaming generate ----------------------------------------------------------------

def test_generate_equals_stream_terminal(engine, lib):
    if not lib.has_generate:
        pytest.skip("this librill.so has no rill_engine_generate")
    run(engine, CAPITAL)  # the prompt's full blocks are now cached, for both runs below alike
    events, _ = run(engine, CAPITAL)
    got = engine.generate(CAPITAL, 60_000)
    want = normalise(events[-1]["response"])
    assert not differences(normalise(got), want), differences(normalise(got), want)


# ---- refusals at submit ---------------------------------------------------------------------

REFUSED = [
    ("invalid_json", '{"input": "hi",', "INVALID_JSON", "JSON"),
    ("input_missing", {"temperature": 0}, "INVALID_REQUEST", "`input`"),
    ("temperature_out_of_range", {"input": "hi", "temperature": 3}, "INVALID_REQUEST", "`temperature`"),
    ("temperature_not_a_number", {"input": "hi", "temperature": "hot"}, "INVALID_REQUEST", "`temperature`"),
    ("previous_response_id", {"input": "hi", "previous_response_id": "resp_1"}, "INVALID_REQUEST",
     "`previous_response_id`"),
    ("background", {"input": "hi", "background": True}, "INVALID_REQUEST", "`background`"),
    ("input_image", {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]}]},
     "INVALID_REQUEST", "`input[0].content[0].type`"),
    ("json_schema", {"input": "hi", "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"},
                                                        "strict": True}}}, "INVALID_REQUEST", "`text.format`"),
    ("unknown_field", {"input": "hi", "frobnicate": 1}, "INVALID_REQUEST", "`frobnicate`"),
]


@pytest.mark.parametrize("body,status,names", [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_refused_at_submit(engine, lib, body, status, names):
    submitted = engine.stats()["requests"]["submitted"]
    with pytest.raises(RillError) as err:
        engine.submit(body)
    assert err.value.code == STATUS[status], err.value
    assert names in err.value.message and names in lib.last_error()
    assert lib.status_str(err.value.code)
    assert engine.stats()["requests"]["submitted"] == submitted, "a refused request was queued"
    assert engine.poll_event(0) is None, "a refused request produced an event"


def test_generate_refuses_like_submit(engine, lib):
    if not lib.has_generate:
        pytest.skip("this librill.so has no rill_engine_generate")
    submitted = engine.stats()["requests"]["submitted"]
    with pytest.raises(RillError) as err:
        engine.generate({"input": "hi", "temperature": 3}, 1000)
    assert err.value.code == STATUS["INVALID_REQUEST"] and "`temperature`" in err.value.message
    assert engine.stats()["requests"]["submitted"] == submitted
