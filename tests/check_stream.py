#!/usr/bin/env python3
"""Validates recorded rill event streams (JSONL files, one response per file) against
OpenAI's own types (the pinned `openai` package, strict pydantic validation) and the
stream invariants of shared/spec/responses.md (1-10), independently of rill's Rust checker.

    python3 tests/check_stream.py FILE.jsonl [FILE.jsonl ...]
    python3 tests/check_stream.py --response FILE.json [FILE.json ...]

With --response, each file is one final Response object (what rill_engine_generate
returns), validated strictly against OpenAI's `Response` type and the invariants of a
terminal event's response (status, item statuses, usage sums).

Prints one line per file and "N passed, N failed"; exits 1 on any failure."""
import json
import sys

import pydantic
from openai.types.responses import Response, ResponseStreamEvent

EVENT = pydantic.TypeAdapter(ResponseStreamEvent)
TERMINAL = {"response.completed": {"completed"}, "response.incomplete": {"incomplete", "cancelled"},
            "response.failed": {"failed"}}


def check(events):
    for e in events:
        EVENT.validate_python(e)  # raises on any shape error
    assert [e["sequence_number"] for e in events] == list(range(len(events))), "sequence numbers"
    assert events[0]["type"] == "response.created" and events[1]["type"] == "response.in_progress"
    terminal = [e for e in events if e["type"] in TERMINAL]
    assert len(terminal) == 1 and terminal[0] is events[-1], "exactly one terminal event, last"
    resp = events[-1]["response"]
    Response.model_validate(resp)
    assert resp["status"] in TERMINAL[events[-1]["type"]], f"{events[-1]['type']} with status {resp['status']}"
    added, done, texts, ids, open_idx = [], {}, {}, set(), None
    logprobs, unlogged = {}, set()  # 10. entries per output_text part; parts with a bare delta
    top_n = resp.get("top_logprobs") or 0
    for e in events:
        t, idx = e["type"], e.get("output_index")
        if t == "response.output_item.added":
            assert idx == len(added) and open_idx is None, "items added in order, one at a time"
            item_id = e["item"]["id"]
            assert item_id and "_" in item_id and item_id not in ids, f"bad item id {item_id!r}"
            ids.add(item_id)
            assert e["item"]["status"] == "in_progress"
            added.append(e["item"])
            open_idx = idx
        elif t == "response.output_item.done":
            assert idx == open_idx and e["item"]["id"] == added[idx]["id"]
            want = {"completed"} if resp["status"] == "completed" else {"completed", "incomplete"}
            assert e["item"]["status"] in want, f"item status {e['item']['status']}"
            done[idx] = e["item"]
            open_idx = None
        elif idx is not None:
            assert idx == open_idx, f"{t} for a closed item"
            assert e["item_id"] == added[idx]["id"], f"{t} item_id"
            key = (idx, e.get("content_index", 0))
            if t.endswith(".delta"):
                assert e["delta"], "empty delta"
                texts[key] = texts.get(key, "") + e["delta"]
                if t == "response.output_text.delta":
                    lp = e["logprobs"]
                    check_entries(lp, top_n, False)
                    if lp:
                        assert "".join(x["token"] for x in lp) == e["delta"], "logprob tokens != delta"
                    else:
                        unlogged.add(key)
                    logprobs.setdefault(key, []).extend(lp)
                    assert not (key in unlogged and logprobs[key]), "some deltas without logprobs"
            elif t in ("response.output_text.done", "response.reasoning_text.done"):
                assert e["text"] == texts.get(key, ""), "done text != concatenated deltas"
                if t == "response.output_text.done":
                    assert e["logprobs"] == logprobs.get(key, []), "done logprobs != the deltas' entries"
            elif t == "response.content_part.done":
                assert e["part"]["text"] == texts.get(key, ""), "part text != deltas"
                if e["part"]["type"] == "output_text":
                    lp = e["part"]["logprobs"]
                    check_entries(lp, top_n, True)
                    assert [without_bytes(x) for x in lp] == logprobs.get(key, []), "part logprobs != deltas'"
    assert open_idx is None, "item left open"
    assert [done[i] for i in range(len(added))] == resp["output"], "terminal output != streamed items"
    for i, item in enumerate(resp["output"]):
        for j, part in enumerate(item.get("content", [])):
            if (i, j) in texts:
                assert part["text"] == texts[(i, j)]
        for marker in ("<think>", "</think>", "<tool_call>", "<|im_end|>", "<|im_start|>"):
            assert marker not in json.dumps(item), f"marker {marker} in output"
    u = resp["usage"]
    assert u["total_tokens"] == u["input_tokens"] + u["output_tokens"]
    assert 0 <= u["output_tokens_details"]["reasoning_tokens"] <= u["output_tokens"]
    assert 0 <= u["input_tokens_details"]["cached_tokens"] <= u["input_tokens"]
    assert "cache_write_tokens" in u["input_tokens_details"]


def check_response(resp):
    """One final Response (no stream around it): OpenAI's type, strictly, and the
    invariants that check() applies to a terminal event's response."""
    Response.model_validate(resp, strict=True)
    assert resp["object"] == "response" and resp["id"].startswith("resp_"), "not a Response"
    status = resp["status"]
    assert status in {"completed", "incomplete", "cancelled", "failed"}, f"status {status}"
    want = {"completed"} if status == "completed" else {"completed", "incomplete"}
    ids = set()
    for item in resp["output"]:
        assert item["status"] in want, f"item status {item['status']} in a {status} response"
        assert item["id"] and "_" in item["id"] and item["id"] not in ids, f"bad item id {item['id']!r}"
        ids.add(item["id"])
        for marker in ("<think>", "</think>", "<tool_call>", "<|im_end|>", "<|im_start|>"):
            assert marker not in json.dumps(item), f"marker {marker} in output"
    if status == "incomplete":
        assert resp["incomplete_details"]["reason"] == "max_output_tokens", "incomplete without a reason"
    if status == "failed":
        assert resp["error"] and resp["error"]["code"], "failed without an error"
    u = resp["usage"]
    assert u["total_tokens"] == u["input_tokens"] + u["output_tokens"]
    assert 0 <= u["output_tokens_details"]["reasoning_tokens"] <= u["output_tokens"]
    assert 0 <= u["input_tokens_details"]["cached_tokens"] <= u["input_tokens"]


def check_entries(entries, top_n, with_bytes):
    """Shape of logprob entries: exactly top_n alternatives, best first; on the final part
    `bytes` too (an entry's are its token's UTF-8, an alternative's its raw bytes)."""
    for x in entries:
        assert isinstance(x["token"], str) and x["logprob"] <= 0, f"bad entry {x}"
        top = x["top_logprobs"]
        assert len(top) == top_n, f"{len(top)} alternatives, top_logprobs is {top_n}"
        lps = [t["logprob"] for t in top]
        assert lps == sorted(lps, reverse=True), "top_logprobs not sorted best first"
        if with_bytes:
            assert bytes(x["bytes"]) == x["token"].encode(), f"entry bytes are not its token: {x}"
            for t in top:
                assert all(0 <= b < 256 for b in t["bytes"])
                try:
                    assert bytes(t["bytes"]).decode() == t["token"], f"alternative bytes: {t}"
                except UnicodeDecodeError:
                    pass  # a piece of a character: its token string is lossy


def without_bytes(x):
    y = {k: v for k, v in x.items() if k != "bytes"}
    y["top_logprobs"] = [{k: v for k, v in t.items() if k != "bytes"} for t in x["top_logprobs"]]
    return y


def main(paths):
    if paths[:1] == ["--response"]:
        return main_responses(paths[1:])
    ok = bad = 0
    for p in paths:
        with open(p, encoding="utf-8") as f:
            events = [json.loads(line) for line in f if line.strip()]
        try:
            check(events)
            ok += 1
            print(f"ok   {p}: {len(events)} events, {events[-1]['type']} ({events[-1]['response']['status']})")
        except (AssertionError, pydantic.ValidationError, KeyError, IndexError) as e:
            bad += 1
            print(f"FAIL {p}: {type(e).__name__}: {e}")
    print(f"{ok} passed, {bad} failed")
    return 1 if bad or not paths else 0


def main_responses(paths):
    ok = bad = 0
    for p in paths:
        try:
            with open(p, encoding="utf-8") as f:
                resp = json.load(f)
            check_response(resp)
            ok += 1
            print(f"ok   {p}: response {resp['status']}, {len(resp['output'])} items")
        except (AssertionError, pydantic.ValidationError, KeyError, IndexError, TypeError, ValueError) as e:
            bad += 1
            print(f"FAIL {p}: {type(e).__name__}: {e}")
    print(f"{ok} passed, {bad} failed")
    return 1 if bad or not paths else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
