"""Shared fixtures: a loopback fake provider and a check that no thread outlives a test; the
run's header says what the conformance tests read and what is skipped here, and why."""

from __future__ import annotations

import gc
import threading

import pytest

import streamcoord
from tests.support.environment import check_conformance_dir, report_lines
from tests.support.fakeserver import FakeProvider

MESSAGES = [{"role": "user", "content": "Say hello"}]
API_KEY = "sk-test-SECRET-0123456789"


def pytest_configure(config):
    # trio (installed with selenium) hands Hypothesis its PRNG when Hypothesis first runs, after
    # a freeze (below): Hypothesis's check cannot see the frozen module that holds it and warns.
    config.addinivalue_line("filterwarnings", "ignore:It looks like `register_random`:hypothesis.errors.HypothesisWarning")
    try:
        check_conformance_dir()
    except ValueError as exc:  # part of the repository: a missing corpus is an error, not a skip
        raise pytest.UsageError(str(exc)) from None


_frozen_before: list = [None]  # the test module whose first test last froze the heap


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    # Before each test module, what is alive by then (imports, collection: ~360k objects at
    # the first) is moved out of the collector's sight: a full collection during a test walks
    # only what the module's tests made. Unfrozen, gen2 collections late in a run paused
    # every thread for 200-350 ms on a loaded 2-core machine (up to 1.1 s in the web tests),
    # longer than the windows timing tests leave a stream. Garbage is collected first, so
    # nothing frozen is garbage; an object frozen here is still freed by its reference count.
    module = item.nodeid.split("::")[0]
    if module != _frozen_before[0]:
        _frozen_before[0] = module
        gc.collect()
        gc.freeze()


def pytest_report_header(config):
    return [f"streamcoord {line}" for line in report_lines()]


def streamcoord_threads():
    return [t for t in threading.enumerate() if t.name.startswith("streamcoord-")]


@pytest.fixture(autouse=True, scope="session")
def recovery_dir(tmp_path_factory):
    """Streams with recovery on and no store of their own write to the default DiskStore:
    keep that inside the test run instead of the user's cache directory."""
    import os

    import streamcoord._recovery

    directory = tmp_path_factory.mktemp("recovery")
    previous = os.environ.get("STREAMCOORD_RECOVERY_DIR")
    os.environ["STREAMCOORD_RECOVERY_DIR"] = str(directory)
    streamcoord._recovery._default_store = None
    yield directory
    if streamcoord._recovery._default_store is not None:
        streamcoord._recovery._default_store.close()
        streamcoord._recovery._default_store = None
    if previous is None:
        os.environ.pop("STREAMCOORD_RECOVERY_DIR", None)
    else:
        os.environ["STREAMCOORD_RECOVERY_DIR"] = previous


@pytest.fixture
def server():
    with FakeProvider() as provider:
        yield provider
    assert provider.errors == [], provider.errors


@pytest.fixture
def no_thread_leak():
    """Fails the test if a streamcoord worker thread is still alive at its end."""
    before = set(streamcoord_threads())
    yield
    leaked = [t for t in streamcoord_threads() if t not in before]
    for t in leaked:
        t.join(2.0)  # a worker that is finishing gets its bounded moment
    alive = [t.name for t in leaked if t.is_alive()]
    assert alive == [], f"worker threads outlived their streams: {alive}"


@pytest.fixture
def sleeps():
    """Retry waits recorded instead of slept, so retry tests run instantly."""
    return []


@pytest.fixture
def client(server, sleeps, no_thread_leak):
    def make(provider="openai", **kwargs):
        kwargs.setdefault("api_key", API_KEY)
        kwargs.setdefault("base_url", server.base_url + ("/v1" if provider in ("openai", "mistral") else ""))
        kwargs.setdefault("max_retries", streamcoord.Retry(2, sleep=sleeps.append))
        return streamcoord.Client(provider, **kwargs)

    return make
