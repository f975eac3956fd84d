"""Fixtures of the conformance suite: the loaded library, a module-scoped engine on the
default model, and the `--update-golden` option (rewrites tests/golden/*.jsonl)."""
import pytest

import support
from rill_ctypes import Engine, Library


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true",
                     help="rewrite tests/golden/*.jsonl from this build instead of comparing")


@pytest.fixture(scope="session")
def update_golden(request):
    return request.config.getoption("--update-golden")


@pytest.fixture(scope="session")
def lib():
    return Library()


@pytest.fixture(scope="module")
def engine(lib):
    """An engine on the default model with 2 threads, shared by one module's tests."""
    with Engine(lib, {"model": str(support.default_model()), "num_threads": 2}) as e:
        yield e
