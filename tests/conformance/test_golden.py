"""Golden streams: greedy requests on the default model compared field by field with
tests/golden/<name>.jsonl after normalising ids (resp_/msg_/rs_/fc_/call_ become stable
placeholders in order of first appearance) and `created_at`. The engine runs without
prefix caching so `cached_tokens` does not depend on which tests ran before.
`python3 -m pytest tests/conformance --update-golden` rewrites the files."""
import pathlib

import pytest

import support
from invariants import check_stream
from rill_ctypes import Engine

GOLDEN_DIR = pathlib.Path(__file__).resolve().parents[1] / "golden"
ADA = [
    {"role": "user", "content": [{"type": "input_text", "text": "My name is Ada."}]},
    {"type": "message", "id": "msg_earlier", "role": "assistant", "status": "completed",
     "content": [{"type": "output_text", "text": "Nice to meet you, Ada!", "annotations": []}]},
    {"role": "user", "content": [{"type": "input_text", "text": "What is my name?"}]},
]
GOLDEN = {
    "plain": {"input": "Name the capital of France.", "temperature": 0, "max_output_tokens": 32},
    "cut": {"input": "Tell me about the moon.", "temperature": 0, "max_output_tokens": 6},
    "logprobs": {"input": "Write the word café and the Chinese for hello.", "temperature": 0,
                 "max_output_tokens": 12, "top_logprobs": 2, "include": ["message.output_text.logprobs"]},
    "multi_turn": {"input": ADA, "instructions": "You are a friendly assistant.", "temperature": 0,
                   "max_output_tokens": 16},
}


@pytest.fixture(scope="module")
def golden_engine(lib):
    config = {"model": str(support.default_model()), "num_threads": 2, "enable_prefix_caching": False}
    with Engine(lib, config) as e:
        yield e


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_stream(golden_engine, update_golden, name):
    events, _ = support.run(golden_engine, GOLDEN[name])
    support.compare_golden(GOLDEN_DIR / f"{name}.jsonl", events, update_golden)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_files_are_valid_streams(name):
    path = GOLDEN_DIR / f"{name}.jsonl"
    assert path.exists(), f"{path} missing"
    check_stream(support.read_jsonl(path), GOLDEN[name])
