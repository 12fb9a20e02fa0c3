"""Fixtures: every store kind behind one ``make_store`` factory, and a controllable clock.

The Redis store is tested against ``$REDIS_URL`` if set, else against a throw-away
``redis-server`` started on 127.0.0.1 with a free port; with neither, its tests are skipped
with the reason shown by ``-ra``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid

import pytest

from recovery_store import DiskStore, MemoryStore
from tests.support.environment import redis_missing


class FakeClock:
    """A clock the test moves by hand; starts at the real wall-clock time."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    missing = redis_missing()
    if missing:
        pytest.skip(f"{missing}: RedisStore tests skipped")
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    server = shutil.which("redis-server")
    import redis

    port = _free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.skip("redis-server did not start")
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


STORE_KINDS = ["memory", "disk", "redis"]


@pytest.fixture(params=STORE_KINDS)
def make_store(request, tmp_path):
    """``make_store(ttl=..., clock=...)`` -> a fresh store of the parametrized kind."""
    kind = request.param
    made = []
    prefix = f"test:{uuid.uuid4().hex}:"

    def make(ttl: float = 3600.0, clock=None):
        if kind == "memory":
            store = MemoryStore(ttl, clock=clock) if clock else MemoryStore(ttl)
        elif kind == "disk":
            kwargs = {"clock": clock} if clock else {}
            store = DiskStore(tmp_path / "store", ttl, **kwargs)
        else:
            from recovery_store import RedisStore

            url = request.getfixturevalue("redis_url")
            kwargs = {"clock": clock} if clock else {}
            store = RedisStore(url, ttl, prefix=prefix, **kwargs)
        made.append(store)
        return store

    make.kind = kind
    yield make
    for store in made:
        store.close()


@pytest.fixture
def store(make_store):
    return make_store()
