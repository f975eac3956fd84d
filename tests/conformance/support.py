"""Helpers shared by the conformance tests: where the default model is, running a request
to its end through the checker, and normalising the ids and timestamps of a stream."""
import json
import os
import pathlib

from invariants import check_stream

MODEL_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
ID_KEYS = ("id", "item_id", "call_id")


def cache_dir():
    """${RILL_CACHE:-~/.cache/rill}."""
    return pathlib.Path(os.environ.get("RILL_CACHE") or pathlib.Path.home() / ".cache" / "rill")


def default_model():
    """RILL_MODEL, else the cached default model (./scripts/fetch_model.sh puts it there)."""
    path = pathlib.Path(os.environ.get("RILL_MODEL") or cache_dir() / MODEL_NAME)
    if not path.exists():
        raise FileNotFoundError(f"{path}: fetch it with ./scripts/fetch_model.sh or set RILL_MODEL")
    return path


def run(engine, request):
    """Streams `request` (polled) and checks it; returns (events, Summary)."""
    events = engine.stream(request)
    return events, check_stream(events, request)


def message_text(response):
    """The concatenated output_text of every message item of a Response."""
    return "".join(p["text"] for it in response["output"] if it["type"] == "message" for p in it["content"])


def normalise(value, names=None):
    """A copy with every rill id (`id`, `item_id`, `call_id`: resp_/msg_/rs_/fc_/call_)
    replaced by `<prefix>_<n>`, numbered per prefix in order of first appearance, and
    every `created_at` set to 0."""
    names = {} if names is None else names
    if isinstance(value, list):
        return [normalise(v, names) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for k, v in value.items():
        if k == "created_at":
            out[k] = 0
        elif k in ID_KEYS and isinstance(v, str):
            out[k] = placeholder(v, names)
        else:
            out[k] = normalise(v, names)
    return out


def placeholder(rill_id, names):
    """The stable name of one id (see normalise)."""
    if rill_id not in names:
        prefix = rill_id.split("_", 1)[0]
        n = sum(v.startswith(prefix + "_") for v in names.values()) + 1
        names[rill_id] = f"{prefix}_{n}"
    return names[rill_id]


def differences(got, want, path="", limit=10):
    """Paths where two JSON values differ (first `limit`), e.g. `[5].delta: 'a' != 'b'`."""
    out = []
    if isinstance(got, dict) and isinstance(want, dict):
        for k in sorted(set(got) | set(want)):
            if k not in got or k not in want:
                out.append(f"{path}.{k}: {'missing' if k not in got else 'unexpected'}")
            else:
                out += differences(got[k], want[k], f"{path}.{k}", limit)
    elif isinstance(got, list) and isinstance(want, list):
        if len(got) != len(want):
            out.append(f"{path}: {len(got)} elements, expected {len(want)}")
        for i, (g, w) in enumerate(zip(got, want)):
            out += differences(g, w, f"{path}[{i}]", limit)
    elif got != want or type(got) is not type(want):
        out.append(f"{path}: {got!r} != {want!r}")
    return out[:limit]


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_jsonl(path, events):
    with open(path, "w", encoding="utf-8") as f:
        for e in events:
            f.write(json.dumps(e, ensure_ascii=False) + "\n")


def compare_golden(path, events, update):
    """Compares a stream with its golden file field by field (ids and created_at
    normalised), or rewrites the file when `update`."""
    got = normalise(events)
    if update:
        write_jsonl(path, got)
        return
    assert path.exists(), f"{path} missing: run python3 -m pytest tests/conformance --update-golden"
    diff = differences(got, read_jsonl(path))
    assert not diff, f"stream differs from {path.name} (first differences):\n" + "\n".join(diff)
