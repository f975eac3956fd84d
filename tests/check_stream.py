#!/usr/bin/env python3
"""Validates recorded rill event streams (JSONL files, one response per file) against
OpenAI's own types (the pinned `openai` package, strict pydantic validation) and the
stream invariants 1-11 of shared/spec/responses.md, independently of rill's Rust checker.
The checker itself is tests/conformance/invariants.py (the conformance suite's); this is
its command-line front end.

    python3 tests/check_stream.py FILE.jsonl [FILE.jsonl ...]
    python3 tests/check_stream.py --response FILE.json [FILE.json ...]

With --response, each file is one final Response object (what rill_engine_generate
returns), validated strictly against OpenAI's `Response` type and the invariants of a
terminal event's response (status, item statuses, ids, markers, usage sums).

Prints one line per file and "N passed, N failed"; exits 1 on any failure."""
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "conformance"))
from invariants import InvariantError, check_stream, require  # noqa: E402
from openai.types.responses import Response  # noqa: E402

MARKERS = ("<think>", "</think>", "<tool_call>", "</tool_call>", "<|im_end|>", "<|im_start|>")


def check_file(path):
    """Checks one JSONL file; returns its one-line report."""
    with open(path, encoding="utf-8") as f:
        events = [json.loads(line) for line in f if line.strip()]
    summary = check_stream(events)
    return f"{len(events)} events, {summary.terminal_type} ({summary.response['status']})"


def check_response_file(path):
    """Checks one final Response (no stream around it); returns its one-line report."""
    with open(path, encoding="utf-8") as f:
        resp = json.load(f)
    Response.model_validate(resp, strict=True)
    require(resp["object"] == "response" and resp["id"].startswith("resp_"), "not a Response")
    status = resp["status"]
    require(status in {"completed", "incomplete", "cancelled", "failed"}, f"status {status}")
    want = {"completed"} if status == "completed" else {"completed", "incomplete"}
    ids = set()
    for item in resp["output"]:
        require(item["status"] in want, f"item status {item['status']} in a {status} response")
        require(item["id"] and "_" in item["id"] and item["id"] not in ids, f"bad item id {item['id']!r}")
        ids.add(item["id"])
        for m in MARKERS:
            require(m not in json.dumps(item), f"marker {m} in output")
    if status == "incomplete":
        require(resp["incomplete_details"]["reason"] == "max_output_tokens", "incomplete without a reason")
    if status == "failed":
        require(resp["error"] and resp["error"]["code"], "failed without an error")
    u = resp["usage"]
    require(u["total_tokens"] == u["input_tokens"] + u["output_tokens"], "total_tokens")
    require(0 <= u["output_tokens_details"]["reasoning_tokens"] <= u["output_tokens"], "reasoning_tokens")
    require(0 <= u["input_tokens_details"]["cached_tokens"] <= u["input_tokens"], "cached_tokens")
    require("cache_write_tokens" in u["input_tokens_details"], "cache_write_tokens")
    return f"{len(resp['output'])} items ({status})"


def main(args):
    check = check_file
    if args[:1] == ["--response"]:
        check, args = check_response_file, args[1:]
    paths = args
    ok = bad = 0
    for p in paths:
        try:
            report = check(p)
            ok += 1
            print(f"ok   {p}: {report}")
        except (InvariantError, OSError, ValueError, KeyError, IndexError, TypeError, AssertionError) as e:
            bad += 1
            print(f"FAIL {p}: {type(e).__name__}: {e}")
    print(f"{ok} passed, {bad} failed")
    return 1 if bad or not paths else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
