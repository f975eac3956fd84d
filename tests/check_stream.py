#!/usr/bin/env python3
"""Validates recorded rill event streams (JSONL files, one response per file) against
OpenAI's own types (the pinned `openai` package, strict pydantic validation) and the
stream invariants 1-11 of shared/spec/responses.md, independently of rill's Rust checker.
The checker itself is tests/conformance/invariants.py (the conformance suite's); this is
its command-line front end.

    python3 tests/check_stream.py FILE.jsonl [FILE.jsonl ...]

Prints one line per file and "N passed, N failed"; exits 1 on any failure."""
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "conformance"))
from invariants import InvariantError, check_stream  # noqa: E402


def check_file(path):
    """Checks one JSONL file; returns its one-line report."""
    with open(path, encoding="utf-8") as f:
        events = [json.loads(line) for line in f if line.strip()]
    summary = check_stream(events)
    return f"{len(events)} events, {summary.terminal_type} ({summary.response['status']})"


def main(paths):
    ok = bad = 0
    for p in paths:
        try:
            report = check_file(p)
            ok += 1
            print(f"ok   {p}: {report}")
        except (InvariantError, OSError, ValueError, KeyError, IndexError, TypeError) as e:
            bad += 1
            print(f"FAIL {p}: {type(e).__name__}: {e}")
    print(f"{ok} passed, {bad} failed")
    return 1 if bad or not paths else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
