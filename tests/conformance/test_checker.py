"""Unit tests of the stream checker itself (invariants.py), on hand-made streams: a valid
stream with a reasoning item, a function call and a message passes, and each broken copy
(one rule violated, often one of vLLM's known defects) is refused with the rule named.
No engine is needed."""
import copy

import pytest

from invariants import InvariantError, check_stream

ASK_LOGPROBS = {"input": "x", "include": ["message.output_text.logprobs"], "top_logprobs": 2}
REASONING = ["Let me ", "think."]
ARGUMENTS = ['{"city": ', '"Paris"}']
MESSAGE = ["Hel", "lo ", "café"]


def response(status, output, usage, top_n=0):
    """A Response object as rill sends it."""
    return {
        "id": "resp_1", "object": "response", "created_at": 1700000000, "status": status,
        "background": False, "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": None, "max_output_tokens": None, "model": "test-model", "output": output,
        "parallel_tool_calls": True, "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None}, "store": False, "temperature": 0.0,
        "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [],
        "top_logprobs": top_n, "top_p": 1.0, "truncation": "disabled", "usage": usage,
        "user": None, "metadata": {},
    }


def usage(output_tokens=12, reasoning_tokens=3):
    return {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
            "total_tokens": 10 + output_tokens}


def entry(token, top_n, with_bytes=False):
    """One logprob entry whose token is the best of `top_n` alternatives."""
    top = [{"token": token, "logprob": -0.25}] + [{"token": f"alt{i}", "logprob": -3.0 - i} for i in range(top_n - 1)]
    e = {"token": token, "logprob": -0.25, "top_logprobs": top[:top_n]}
    if with_bytes:
        e["bytes"] = list(token.encode())
        for t in e["top_logprobs"]:
            t["bytes"] = list(t["token"].encode())
    return e


class Builder:
    """Emits a stream event by event, numbering them."""

    def __init__(self, top_n=0, asked=False):
        self.events, self.output, self.top_n, self.asked = [], [], top_n, asked

    def emit(self, type_, **fields):
        self.events.append({"type": type_, "sequence_number": len(self.events), **fields})

    def text_item(self, kind, iid, deltas, status):
        idx, part_type = len(self.output), "output_text" if kind == "message" else "reasoning_text"
        item = {"id": iid, "type": kind, "status": "in_progress", "content": []}
        item.update({"role": "assistant"} if kind == "message" else {"summary": []})
        self.emit("response.output_item.added", output_index=idx, item=copy.deepcopy(item))
        empty = {"type": part_type, "text": ""}
        if kind == "message":
            empty.update(annotations=[], logprobs=[])
        ev = "response.output_text" if kind == "message" else "response.reasoning_text"
        ids = {"item_id": iid, "output_index": idx, "content_index": 0}
        self.emit("response.content_part.added", **ids, part=copy.deepcopy(empty))
        entries = []
        for d in deltas:
            extra = {}
            if kind == "message":
                extra["logprobs"] = [entry(d, self.top_n)] if self.asked else []
                entries += extra["logprobs"]
            self.emit(f"{ev}.delta", **ids, delta=d, **extra)
        text = "".join(deltas)
        extra = {"logprobs": entries} if kind == "message" else {}
        self.emit(f"{ev}.done", **ids, text=text, **extra)
        part = {**empty, "text": text}
        if kind == "message":
            part["logprobs"] = [entry(d, self.top_n, True) for d in deltas] if self.asked else []
        self.emit("response.content_part.done", **ids, part=copy.deepcopy(part))
        self.finish_item(idx, {**item, "status": status, "content": [part]})

    def function_call(self, iid, name, deltas, status):
        idx = len(self.output)
        item = {"id": iid, "type": "function_call", "call_id": "call_" + iid[3:], "name": name,
                "arguments": "", "status": "in_progress"}
        self.emit("response.output_item.added", output_index=idx, item=copy.deepcopy(item))
        for d in deltas:
            self.emit("response.function_call_arguments.delta", item_id=iid, output_index=idx, delta=d)
        args = "".join(deltas)
        self.emit("response.function_call_arguments.done", item_id=iid, output_index=idx, name=name, arguments=args)
        self.finish_item(idx, {**item, "arguments": args, "status": status})

    def finish_item(self, idx, item):
        self.emit("response.output_item.done", output_index=idx, item=copy.deepcopy(item))
        self.output.append(copy.deepcopy(item))

    def start(self):
        for t in ("response.created", "response.in_progress"):
            self.emit(t, response=response("in_progress", [], None, self.top_n))

    def end(self, status, use):
        t = {"completed": "response.completed", "incomplete": "response.incomplete",
             "cancelled": "response.incomplete"}[status]
        self.emit(t, response=response(status, self.output, use, self.top_n))
        return self.events


def stream(status="completed", top_n=0, asked=False):
    """Reasoning, a function call and a message; the last item is cut unless completed."""
    b = Builder(top_n, asked)
    b.start()
    b.text_item("reasoning", "rs_1", REASONING, "completed")
    b.function_call("fc_1", "get_weather", ARGUMENTS, "completed")
    b.text_item("message", "msg_1", MESSAGE, "completed" if status == "completed" else "incomplete")
    return b.end(status, usage())


def find(events, type_, nth=0):
    """The nth event of a type."""
    return [e for e in events if e["type"] == type_][nth]


def renumber(events):
    for i, e in enumerate(events):
        e["sequence_number"] = i
    return events


def last_response(events):
    return events[-1]["response"]


# ---- valid streams pass -------------------------------------------------------------------

@pytest.mark.parametrize("status", ["completed", "incomplete", "cancelled"])
def test_valid_streams_pass(status):
    s = check_stream(stream(status))
    assert [it.type for it in s.items] == ["reasoning", "function_call", "message"]
    assert s.texts("reasoning") == ["".join(REASONING)] and s.texts("message") == ["".join(MESSAGE)]


def test_valid_stream_with_logprobs_passes():
    check_stream(stream(top_n=2, asked=True), ASK_LOGPROBS)


def test_empty_output_passes():
    b = Builder()
    b.start()
    check_stream(b.end("cancelled", usage(0, 0)))


# ---- broken streams fail, each with its rule named ----------------------------------------

def skip_sequence(ev):
    ev[5]["sequence_number"] += 1
    for e in ev[6:]:
        e["sequence_number"] += 1


def done_text_mismatch(ev):
    find(ev, "response.output_text.done")["text"] += "!"


def part_text_mismatch(ev):
    find(ev, "response.content_part.done", 1)["part"]["text"] = "Hello"


def item_done_text_mismatch(ev):
    find(ev, "response.output_item.done", 2)["item"]["content"][0]["text"] = "other"


def terminal_text_mismatch(ev):
    last_response(ev)["output"][2]["content"][0]["text"] = "other"


def reuse_item_id(ev):
    for e in ev:
        if e.get("item_id") == "msg_1":
            e["item_id"] = "rs_1"
        if e.get("item", {}).get("id") == "msg_1":
            e["item"]["id"] = "rs_1"
    last_response(ev)["output"][2]["id"] = "rs_1"


def empty_item_id(ev):
    find(ev, "response.output_text.delta")["item_id"] = ""


def wrong_prefix(ev):
    for e in ev:
        if e.get("item_id") == "fc_1":
            e["item_id"] = "msg_9"
        if e.get("item", {}).get("id") == "fc_1":
            e["item"]["id"] = "msg_9"
    last_response(ev)["output"][1]["id"] = "msg_9"


def missing_terminal(ev):
    ev.pop()


def two_terminals(ev):
    ev.insert(-1, copy.deepcopy(ev[-1]))
    renumber(ev)


def event_after_terminal(ev):
    ev.append(copy.deepcopy(ev[-2]))
    renumber(ev)


def marker_in_text(ev):
    for e in ev:
        if e["type"] == "response.reasoning_text.delta" and e["delta"] == "think.":
            e["delta"] = "think.</think>"
    text = "".join(REASONING) + "</think>"
    find(ev, "response.reasoning_text.done")["text"] = text
    find(ev, "response.content_part.done")["part"]["text"] = text
    find(ev, "response.output_item.done")["item"]["content"][0]["text"] = text
    last_response(ev)["output"][0]["content"][0]["text"] = text


def marker_in_arguments(ev):
    args = '{"city": "<tool_call>"}'
    find(ev, "response.function_call_arguments.delta", 1)["delta"] = '"<tool_call>"}'
    find(ev, "response.function_call_arguments.done")["arguments"] = args
    find(ev, "response.output_item.done", 1)["item"]["arguments"] = args
    last_response(ev)["output"][1]["arguments"] = args


def reasoning_tokens_zero(ev):
    last_response(ev)["usage"]["output_tokens_details"]["reasoning_tokens"] = 0


def reasoning_tokens_over(ev):
    last_response(ev)["usage"]["output_tokens_details"]["reasoning_tokens"] = 13


def total_tokens_wrong(ev):
    last_response(ev)["usage"]["total_tokens"] += 1


def cached_over_input(ev):
    last_response(ev)["usage"]["input_tokens_details"]["cached_tokens"] = 11


def no_cache_write_tokens(ev):
    del last_response(ev)["usage"]["input_tokens_details"]["cache_write_tokens"]


def empty_final_output(ev):
    last_response(ev)["output"] = []


def fresh_final_ids(ev):
    last_response(ev)["output"][2]["id"] = "msg_2"


def message_with_reasoning_index(ev):
    for e in ev:
        if e.get("output_index") == 2:
            e["output_index"] = 0


def done_with_next_index(ev):
    find(ev, "response.output_text.done")["output_index"] = 3


def content_index_per_delta(ev):
    find(ev, "response.output_text.delta", 1)["content_index"] = 1


def overlapping_items(ev):
    i = ev.index(find(ev, "response.output_item.done"))
    j = ev.index(find(ev, "response.output_item.added", 1))
    ev.insert(i, ev.pop(j))
    renumber(ev)


def added_completed(ev):
    find(ev, "response.output_item.added", 2)["item"]["status"] = "completed"


def cut_reported_completed(ev):
    ev[-1]["type"] = "response.completed"


def completed_response_incomplete_item(ev):
    find(ev, "response.output_item.done", 2)["item"]["status"] = "incomplete"
    last_response(ev)["output"][2]["status"] = "incomplete"


def reasoning_part_event(ev):
    e = find(ev, "response.content_part.added")
    e["type"] = "response.reasoning_part.added"


def bare_error_payload(ev):
    ev.insert(-1, {"type": "error", "sequence_number": 0, "code": "server_error", "message": "boom", "param": None})
    renumber(ev)


def raw_tool_call_text(ev):
    find(ev, "response.output_text.delta")["delta"] = "<tool_call>"
    text = "<tool_call>" + "".join(MESSAGE[1:])
    find(ev, "response.output_text.done")["text"] = text
    find(ev, "response.content_part.done", 1)["part"]["text"] = text
    find(ev, "response.output_item.done", 2)["item"]["content"][0]["text"] = text
    last_response(ev)["output"][2]["content"][0]["text"] = text


def arguments_done_mismatch(ev):
    find(ev, "response.function_call_arguments.done")["arguments"] = "{}"


def arguments_done_wrong_name(ev):
    find(ev, "response.function_call_arguments.done")["name"] = "other"


def bad_call_id(ev):
    find(ev, "response.output_item.added", 1)["item"]["call_id"] = "c1"


def missing_delta_field(ev):
    del find(ev, "response.output_text.delta")["delta"]


def empty_delta(ev):
    e = find(ev, "response.output_text.delta")
    e["delta"] = ""


def wrong_part_type(ev):
    find(ev, "response.content_part.added")["part"] = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}


def cancelled_with_details(ev):
    last_response(ev)["incomplete_details"] = {"reason": "max_output_tokens"}


BROKEN = [
    (skip_sequence, "completed", "sequence_number"),
    (done_text_mismatch, "completed", "done text"),
    (part_text_mismatch, "completed", "part text"),
    (item_done_text_mismatch, "completed", "content != the parts done"),
    (terminal_text_mismatch, "completed", "output != the streamed items"),
    (reuse_item_id, "completed", "lacks msg_|reused"),
    (empty_item_id, "completed", "item id ''"),
    (wrong_prefix, "completed", "lacks fc_"),
    (missing_terminal, "completed", "terminal events"),
    (two_terminals, "completed", "2 terminal events"),
    (event_after_terminal, "completed", "terminal events"),
    (marker_in_text, "completed", "marker </think>"),
    (marker_in_arguments, "completed", "marker <tool_call>"),
    (raw_tool_call_text, "completed", "marker <tool_call>"),
    (reasoning_tokens_zero, "completed", "reasoning_tokens is 0"),
    (reasoning_tokens_over, "completed", "reasoning_tokens 13 > output_tokens"),
    (total_tokens_wrong, "completed", "total_tokens"),
    (cached_over_input, "completed", "cached_tokens"),
    (no_cache_write_tokens, "completed", "cache_write_tokens"),
    (empty_final_output, "completed", "output != the streamed items"),
    (fresh_final_ids, "completed", "output != the streamed items"),
    (message_with_reasoning_index, "completed", "output_index 0"),
    (done_with_next_index, "completed", "output_index 3"),
    (content_index_per_delta, "completed", "content_index 1"),
    (overlapping_items, "completed", "item added while item 0 is open"),
    (added_completed, "completed", "added with status completed"),
    (cut_reported_completed, "incomplete", "with status incomplete"),
    (completed_response_incomplete_item, "completed", "incomplete in a completed response"),
    (reasoning_part_event, "completed", "not an event a text engine emits"),
    (bare_error_payload, "completed", "not an event a text engine emits"),
    (arguments_done_mismatch, "completed", "done arguments"),
    (arguments_done_wrong_name, "completed", "done name"),
    (bad_call_id, "completed", "call_id"),
    (missing_delta_field, "completed", "not a valid response.output_text.delta"),
    (empty_delta, "completed", "empty delta"),
    (wrong_part_type, "completed", "output_text part in a reasoning item"),
    (cancelled_with_details, "cancelled", "cancelled with incomplete_details"),
]


@pytest.mark.parametrize("mutate,status,message", BROKEN, ids=[b[0].__name__ for b in BROKEN])
def test_broken_stream_fails(mutate, status, message):
    events = stream(status)
    mutate(events)
    with pytest.raises(InvariantError, match=message):
        check_stream(events)


def test_incomplete_without_reason_fails():
    events = stream("incomplete")
    last_response(events)["incomplete_details"] = None
    with pytest.raises(InvariantError, match="incomplete_details"):
        check_stream(events)


def test_earlier_item_incomplete_fails():
    events = stream("incomplete")
    find(events, "response.output_item.done")["item"]["status"] = "incomplete"
    last_response(events)["output"][0]["status"] = "incomplete"
    with pytest.raises(InvariantError, match="item 0 incomplete but not last"):
        check_stream(events)


# ---- logprobs (invariant 10) ----------------------------------------------------------------

def lp_tokens_not_delta(ev):
    find(ev, "response.output_text.delta")["logprobs"][0]["token"] = "Hal"


def lp_delta_without_entries(ev):
    find(ev, "response.output_text.delta", 1)["logprobs"] = []


def lp_done_without(ev):
    find(ev, "response.output_text.done")["logprobs"] = []


def lp_part_without_bytes(ev):
    del find(ev, "response.content_part.done", 1)["part"]["logprobs"][0]["bytes"]


def lp_wrong_top_count(ev):
    find(ev, "response.output_text.delta")["logprobs"][0]["top_logprobs"].pop()


def lp_unsorted(ev):
    top = find(ev, "response.output_text.delta")["logprobs"][0]["top_logprobs"]
    top.reverse()


def lp_on_reasoning(ev):
    find(ev, "response.reasoning_text.delta")["logprobs"] = [entry("Let me ", 2)]


LOGPROB_BROKEN = [
    (lp_tokens_not_delta, "entry tokens"),
    (lp_delta_without_entries, "without logprob entries"),
    (lp_done_without, "done logprobs"),
    (lp_part_without_bytes, "bytes"),
    (lp_wrong_top_count, "1 alternatives, top_logprobs is 2"),
    (lp_unsorted, "sorted best first"),
    (lp_on_reasoning, "reasoning delta carries logprobs"),
]


@pytest.mark.parametrize("mutate,message", LOGPROB_BROKEN, ids=[b[0].__name__ for b in LOGPROB_BROKEN])
def test_broken_logprobs_fail(mutate, message):
    events = stream(top_n=2, asked=True)
    mutate(events)
    with pytest.raises(InvariantError, match=message):
        check_stream(events, ASK_LOGPROBS)


def test_logprobs_present_but_not_asked_fails():
    with pytest.raises(InvariantError, match="not asked for"):
        check_stream(stream(top_n=2, asked=True), {"input": "x"})
