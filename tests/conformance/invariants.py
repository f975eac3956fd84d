"""The stream checker of the conformance suite: one response's events, in delivery order,
against OpenAI's own types (the pinned `openai` package, strict pydantic validation) and
invariants 1-11 of shared/spec/responses.md, for every item type rill emits: `message`
(output_text parts), `reasoning` (reasoning_text parts) and `function_call` (arguments).

    summary = check_stream(events, request=None)

raises `InvariantError` (an AssertionError) naming the event and the rule on the first
violation, and returns a `Summary` (the terminal response, items, texts) otherwise.
`request` (the request body as a dict) tells whether logprobs were asked for; without it
that is inferred from the stream. tests/check_stream.py is the command-line front end."""
import json
from dataclasses import dataclass, field

import pydantic
from openai.types.responses import Response, ResponseStreamEvent

EVENT = pydantic.TypeAdapter(ResponseStreamEvent)
TERMINAL = {
    "response.completed": {"completed"},
    "response.incomplete": {"incomplete", "cancelled"},
    "response.failed": {"failed"},
}
ITEM_PREFIX = {"message": "msg_", "reasoning": "rs_", "function_call": "fc_"}
PART_TYPE = {"message": "output_text", "reasoning": "reasoning_text"}
TEXT_EVENTS = {"output_text": "response.output_text", "reasoning_text": "response.reasoning_text"}
MARKERS = ("<think>", "</think>", "<tool_call>", "</tool_call>", "<|im_end|>", "<|im_start|>")
LOGPROBS_INCLUDE = "message.output_text.logprobs"
KNOWN_EVENTS = {
    "response.created", "response.in_progress", *TERMINAL,
    "response.output_item.added", "response.output_item.done",
    "response.content_part.added", "response.content_part.done",
    "response.output_text.delta", "response.output_text.done",
    "response.reasoning_text.delta", "response.reasoning_text.done",
    "response.function_call_arguments.delta", "response.function_call_arguments.done",
}


class InvariantError(AssertionError):
    """A stream broke a rule of the contract."""


def require(cond, message):
    """Raises InvariantError(message) unless cond."""
    if not cond:
        raise InvariantError(message)


@dataclass
class Part:
    """One content part of a message or reasoning item, as streamed."""
    type: str
    text: str = ""
    logprobs: list = field(default_factory=list)
    unlogged: bool = False  # some delta came without entries
    text_done: bool = False
    done: dict = None


@dataclass
class Item:
    """One output item, as streamed."""
    index: int
    added: dict
    parts: list = field(default_factory=list)
    arguments: str = ""
    arguments_done: bool = False
    done: dict = None

    @property
    def type(self):
        return self.added["type"]

    @property
    def id(self):
        return self.added["id"]

    def open_part(self):
        """The part added and not yet done, or None."""
        return self.parts[-1] if self.parts and self.parts[-1].done is None else None


@dataclass
class Summary:
    """What a valid stream produced."""
    response: dict
    items: list
    terminal_type: str

    def texts(self, item_type):
        """The texts of every part of every item of `item_type`."""
        return [p.text for it in self.items if it.type == item_type for p in it.parts]


def check_stream(events, request=None):
    """Checks one response's events; raises InvariantError, returns a Summary."""
    return StreamChecker(events, request).run()


class StreamChecker:
    """Walks the events once, keeping each item's and part's state."""

    def __init__(self, events, request=None):
        self.events = list(events)
        self.request = request
        self.items = []
        self.ids = set()
        self.where = "stream"

    # ---- driver ---------------------------------------------------------------------

    def run(self):
        require(len(self.events) >= 3, f"only {len(self.events)} events")
        for i, e in enumerate(self.events):
            self.where = f"event {i} ({e.get('type')})"
            self.validate_shape(e)
            self.fail_unless(e["sequence_number"] == i, f"sequence_number {e['sequence_number']}, expected {i}")
        self.check_start()
        self.check_one_terminal()
        self.top_n = self.events[-1]["response"].get("top_logprobs") or 0
        self.asked = self.logprobs_asked()
        for i, e in enumerate(self.events[2:-1], start=2):
            self.where = f"event {i} ({e['type']})"
            self.on_event(e)
        self.where = f"event {len(self.events) - 1} ({self.events[-1]['type']})"
        self.fail_unless(not self.items or self.items[-1].done is not None, "an item is still open at the end")
        return self.check_terminal(self.events[-1])

    def fail_unless(self, cond, message):
        require(cond, f"{self.where}: {message}")

    def validate_shape(self, e):
        """OpenAI's types, strictly: a missing field, a wrong type or an unknown event raises."""
        self.fail_unless(e.get("type") in KNOWN_EVENTS, "not an event a text engine emits")
        try:
            EVENT.validate_python(e, strict=True)
        except pydantic.ValidationError as err:
            raise InvariantError(f"{self.where}: not a valid {e.get('type')}: {err}") from err

    def logprobs_asked(self):
        if self.request is not None:
            return LOGPROBS_INCLUDE in (self.request.get("include") or [])
        return any(e.get("logprobs") for e in self.events if e["type"] == "response.output_text.delta")

    # ---- response-level events (invariants 1, 8) ---------------------------------------

    def check_start(self):
        first = self.events[0]["response"]
        require(first["id"].startswith("resp_") and len(first["id"]) > 5, f"bad response id {first['id']!r}")
        for i, want in enumerate(("response.created", "response.in_progress")):
            e = self.events[i]
            self.where = f"event {i} ({e['type']})"
            self.fail_unless(e["type"] == want, f"the stream must start with {want}")
            r = e["response"]
            self.fail_unless(r["status"] == "in_progress", f"status {r['status']}")
            self.fail_unless(r["output"] == [] and r["usage"] is None, "output must be [] and usage null")
            self.same_response(r)

    def same_response(self, r):
        first = self.events[0]["response"]
        for k in ("id", "created_at", "model"):
            self.fail_unless(r[k] == first[k], f"response {k} {r[k]!r} differs from {first[k]!r}")

    def check_one_terminal(self):
        kinds = [e["type"] for e in self.events if e["type"] in TERMINAL]
        require(len(kinds) == 1 and self.events[-1]["type"] in TERMINAL,
                f"{len(kinds)} terminal events; the last event is {self.events[-1]['type']}")
        for e in self.events[2:-1]:
            require(e["type"] not in ("response.created", "response.in_progress"),
                    f"{e['type']} in the middle of the stream")

    # ---- item events (invariants 2-7, 10, 11) ------------------------------------------

    def on_event(self, e):
        t = e["type"]
        if t == "response.output_item.added":
            return self.on_item_added(e)
        item = self.event_item(e)
        if t == "response.output_item.done":
            return self.on_item_done(e, item)
        if t.startswith("response.function_call_arguments."):
            return self.on_arguments(e, item)
        if t == "response.content_part.added":
            return self.on_part_added(e, item)
        part = self.event_part(e, item)
        if t == "response.content_part.done":
            return self.on_part_done(e, item, part)
        return self.on_text(e, item, part)

    def on_item_added(self, e):
        open_item = self.items[-1] if self.items and self.items[-1].done is None else None
        self.fail_unless(open_item is None, f"item added while item {open_item and open_item.index} is open")
        idx, item = e["output_index"], e["item"]
        self.fail_unless(idx == len(self.items), f"output_index {idx}, expected {len(self.items)}")
        prefix = ITEM_PREFIX.get(item["type"])
        self.fail_unless(prefix is not None, f"unexpected item type {item['type']}")
        iid = item.get("id") or ""
        self.fail_unless(iid.startswith(prefix) and len(iid) > len(prefix), f"item id {iid!r} lacks {prefix}")
        self.fail_unless(iid not in self.ids, f"item id {iid} reused")
        self.ids.add(iid)
        self.fail_unless(item["status"] == "in_progress", f"item added with status {item['status']}")
        if item["type"] == "function_call":
            self.fail_unless(item["arguments"] == "", "function_call added with arguments")
            self.fail_unless(item["call_id"].startswith("call_") and len(item["call_id"]) > 5,
                             f"call_id {item['call_id']!r} lacks call_")
            self.fail_unless(item["name"], "function_call added without a name")
        else:
            self.fail_unless(item.get("content") == [], f"{item['type']} added with content")
        if item["type"] == "message":
            self.fail_unless(item["role"] == "assistant", f"message role {item['role']}")
        if item["type"] == "reasoning":
            self.fail_unless(item.get("summary") == [], "reasoning added with a summary")
        self.items.append(Item(idx, item))

    def event_item(self, e):
        """The open item an item-level event belongs to (same output_index and id)."""
        idx = e["output_index"]
        self.fail_unless(self.items and self.items[-1].done is None and idx == self.items[-1].index,
                         f"output_index {idx} is not the open item")
        item = self.items[-1]
        iid = e["item"]["id"] if "item" in e else e["item_id"]
        self.fail_unless(iid == item.id, f"item id {iid!r}, the open item is {item.id!r}")
        return item

    def event_part(self, e, item):
        """The open part a text event belongs to (same content_index, matching type)."""
        part = item.open_part()
        self.fail_unless(part is not None, "no content part is open")
        self.fail_unless(e["content_index"] == len(item.parts) - 1,
                         f"content_index {e['content_index']}, the open part is {len(item.parts) - 1}")
        kind = e["type"].rsplit(".", 1)[0]
        if e["type"].startswith("response.content_part."):
            kind = TEXT_EVENTS[part.type]
        self.fail_unless(kind == TEXT_EVENTS[part.type], f"{e['type']} in a {part.type} part")
        return part

    def on_part_added(self, e, item):
        self.fail_unless(item.type in PART_TYPE, f"content part in a {item.type} item")
        self.fail_unless(item.open_part() is None, "content part added while another is open")
        self.fail_unless(e["content_index"] == len(item.parts),
                         f"content_index {e['content_index']}, expected {len(item.parts)}")
        p = e["part"]
        self.fail_unless(p["type"] == PART_TYPE[item.type], f"{p['type']} part in a {item.type} item")
        self.fail_unless(p["text"] == "", "part added with text")
        if p["type"] == "output_text":
            self.fail_unless(p["annotations"] == [] and p.get("logprobs") == [], "output_text part added non-empty")
        item.parts.append(Part(p["type"]))

    def on_text(self, e, item, part):
        if e["type"].endswith(".delta"):
            self.fail_unless(not part.text_done, "delta after done")
            self.fail_unless(isinstance(e["delta"], str) and e["delta"], "empty delta")
            self.no_markers(e["delta"])
            part.text += e["delta"]
            if part.type == "output_text":
                self.on_delta_logprobs(e, part)
            else:
                self.fail_unless(not e.get("logprobs"), "a reasoning delta carries logprobs")
            return
        self.fail_unless(not part.text_done, "second done event for the part")
        part.text_done = True
        self.fail_unless(e["text"] == part.text, f"done text {e['text']!r} != deltas {part.text!r}")
        if part.type == "output_text":
            self.fail_unless(e["logprobs"] == part.logprobs, "done logprobs != the deltas' entries")
        else:
            self.fail_unless(not e.get("logprobs"), "reasoning_text.done carries logprobs")

    def on_delta_logprobs(self, e, part):
        lp = e["logprobs"]
        if not self.asked:
            self.fail_unless(lp == [], "logprobs on a delta although not asked for")
            return
        self.fail_unless(lp, "a delta without logprob entries although asked for")
        self.check_entries(lp, with_bytes=False)
        tokens = "".join(x["token"] for x in lp)
        self.fail_unless(tokens == e["delta"], f"entry tokens {tokens!r} != delta {e['delta']!r}")
        part.logprobs.extend(lp)

    def check_entries(self, entries, with_bytes):
        """Entry shape: exactly top_logprobs alternatives, best first, none better than the best;
        on the final part `bytes` too (an entry's are its token's UTF-8)."""
        for x in entries:
            self.fail_unless(isinstance(x["token"], str) and x["logprob"] <= 0, f"bad entry {x}")
            top = x["top_logprobs"]
            self.fail_unless(len(top) == self.top_n, f"{len(top)} alternatives, top_logprobs is {self.top_n}")
            lps = [t["logprob"] for t in top]
            self.fail_unless(lps == sorted(lps, reverse=True), "top_logprobs not sorted best first")
            self.fail_unless(not lps or x["logprob"] <= lps[0] + 1e-6, f"entry better than the best alternative: {x}")
            if with_bytes:
                self.fail_unless(bytes(x.get("bytes") or []) == x["token"].encode(), f"entry bytes are not its token: {x}")
                self.fail_unless(all(isinstance(t.get("bytes"), list) for t in top), f"alternative without bytes: {x}")

    def on_part_done(self, e, item, part):
        self.fail_unless(part.text_done, f"content_part.done before {TEXT_EVENTS[part.type]}.done")
        p = e["part"]
        self.fail_unless(p["type"] == part.type, f"part type {p['type']} != {part.type}")
        self.fail_unless(p["text"] == part.text, "part text != the deltas")
        if part.type == "output_text":
            lp = p.get("logprobs")
            self.fail_unless(isinstance(lp, list), "output_text part without a logprobs list")
            self.check_entries(lp, with_bytes=True)
            self.fail_unless([without_bytes(x) for x in lp] == part.logprobs, "part logprobs != the deltas' entries")
        part.done = p

    def on_arguments(self, e, item):
        self.fail_unless(item.type == "function_call", f"{e['type']} in a {item.type} item")
        self.fail_unless(not item.arguments_done, f"{e['type']} after arguments done")
        if e["type"].endswith(".delta"):
            self.fail_unless(isinstance(e["delta"], str) and e["delta"], "empty arguments delta")
            self.no_markers(e["delta"])
            item.arguments += e["delta"]
            return
        item.arguments_done = True
        self.fail_unless(e["arguments"] == item.arguments, f"done arguments {e['arguments']!r} != deltas {item.arguments!r}")
        self.fail_unless(e.get("name") == item.added["name"], f"done name {e.get('name')!r} != {item.added['name']!r}")

    def on_item_done(self, e, item):
        d = e["item"]
        self.fail_unless(d["type"] == item.type, f"done item type {d['type']} != {item.type}")
        self.fail_unless(d["status"] in ("completed", "incomplete"), f"item done with status {d['status']}")
        if item.type == "function_call":
            self.fail_unless(item.arguments_done, "function_call done before function_call_arguments.done")
            for k in ("call_id", "name"):
                self.fail_unless(d[k] == item.added[k], f"done {k} {d[k]!r} != added {item.added[k]!r}")
            self.fail_unless(d["arguments"] == item.arguments, "done item arguments != the deltas")
            if d["status"] == "completed":
                self.fail_unless(is_json_object(d["arguments"]), f"arguments {d['arguments']!r} not a JSON object")
        else:
            self.fail_unless(item.open_part() is None, "item done with a part open")
            self.fail_unless(d["content"] == [p.done for p in item.parts], "done item content != the parts done")
        if item.type == "reasoning":
            self.fail_unless(d.get("summary") == [], "reasoning done with a summary")
        item.done = d

    def no_markers(self, text):
        for m in MARKERS:
            self.fail_unless(m not in text, f"marker {m} in {text!r}")

    # ---- the terminal event (invariants 2, 5, 7, 8, 9, 11) ----------------------------

    def check_terminal(self, e):
        r = e["response"]
        try:
            Response.model_validate(r, strict=True)
        except pydantic.ValidationError as err:
            raise InvariantError(f"{self.where}: not a valid Response: {err}") from err
        self.same_response(r)
        status = r["status"]
        self.fail_unless(status in TERMINAL[e["type"]], f"{e['type']} with status {status}")
        self.fail_unless(r["output"] == [it.done for it in self.items], "output != the streamed items")
        self.check_end_details(r)
        self.check_item_statuses(status)
        self.no_markers(json.dumps(r["output"], ensure_ascii=False))
        self.check_usage(r)
        return Summary(r, self.items, e["type"])

    def check_end_details(self, r):
        status, details = r["status"], r["incomplete_details"]
        if status == "incomplete":
            self.fail_unless(details and details.get("reason") == "max_output_tokens",
                             f"incomplete with incomplete_details {details}")
        else:
            self.fail_unless(details is None, f"{status} with incomplete_details {details}")
        if status == "failed":
            self.fail_unless(r["error"] and r["error"].get("code") and r["error"].get("message"),
                             "failed without error code and message")
        else:
            self.fail_unless(r["error"] is None, f"{status} with error {r['error']}")

    def check_item_statuses(self, status):
        """Every item but the last completed; the last completed too unless the response was
        cut, cancelled or failed (then it may be incomplete)."""
        for it in self.items[:-1]:
            self.fail_unless(it.done["status"] == "completed", f"item {it.index} {it.done['status']} but not last")
        if self.items and status == "completed":
            self.fail_unless(self.items[-1].done["status"] == "completed",
                             f"item {self.items[-1].index} {self.items[-1].done['status']} in a completed response")

    def check_usage(self, r):
        u = r["usage"]
        if r["status"] == "failed" and u is None:
            return
        self.fail_unless(u is not None, "no usage")
        inp, out = u["input_tokens"], u["output_tokens"]
        det_in, det_out = u["input_tokens_details"], u["output_tokens_details"]
        self.fail_unless(u["total_tokens"] == inp + out, f"total_tokens {u['total_tokens']} != {inp} + {out}")
        self.fail_unless(inp > 0 and out >= 0, f"input_tokens {inp}, output_tokens {out}")
        self.fail_unless("cache_write_tokens" in det_in, "no cache_write_tokens")
        self.fail_unless(0 <= det_in["cached_tokens"] <= inp, f"cached_tokens {det_in['cached_tokens']} > input {inp}")
        rt = det_out["reasoning_tokens"]
        self.fail_unless(0 <= rt <= out, f"reasoning_tokens {rt} > output_tokens {out}")
        if any(p.text for it in self.items if it.type == "reasoning" for p in it.parts):
            self.fail_unless(rt > 0, "reasoning text produced but reasoning_tokens is 0")
        if r.get("max_output_tokens"):
            self.fail_unless(out <= r["max_output_tokens"], f"output_tokens {out} > max_output_tokens")
        entries = sum(len(p.logprobs) for it in self.items for p in it.parts)
        self.fail_unless(entries <= out, f"{entries} logprob entries for {out} output tokens")


def without_bytes(x):
    """A final part's logprob entry as the deltas carry it (no `bytes`)."""
    y = {k: v for k, v in x.items() if k != "bytes"}
    y["top_logprobs"] = [{k: v for k, v in t.items() if k != "bytes"} for t in x["top_logprobs"]]
    return y


def is_json_object(text):
    """Whether `text` parses as a JSON object."""
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False
