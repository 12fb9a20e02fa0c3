"""A live stream taken up again, over loopback HTTP: readers attached while a failed stream
is resumed follow the new generation, not the old failure (memory, disk, a real
redis-server)."""

from __future__ import annotations

import threading
import uuid

import pytest

from recovery_store import DiskStore, MemoryStore
from streamcoord.errors import ServerError
from tests.loopback.test_live_streams import LEASE_TTL, MESSAGES, USAGE, gated_answer, wait_for_text
from tests.loopback.test_recovery import BROKEN, FULL, consumer_view
from tests.support.fakeserver import error
from tests.unit.recovery_store.conftest import redis_url  # noqa: F401 - the fixture: a throwaway redis-server


@pytest.fixture(params=["memory", "disk", "redis"])
def store(request, tmp_path):
    if request.param == "memory":
        made = MemoryStore()
    elif request.param == "disk":
        made = DiskStore(tmp_path / "store")
    else:
        from recovery_store import RedisStore

        made = RedisStore(request.getfixturevalue("redis_url"), prefix=f"test-resumed:{uuid.uuid4().hex}:")
    yield made
    made.close()


def test_an_attach_while_a_failed_live_stream_is_resumed_follows_the_new_generation(server, client, store):
    gate = threading.Event()
    server.enqueue(error(503, {"error": {"message": "overloaded"}}), gated_answer(gate))
    live = client(recovery_store=store, lease_ttl=LEASE_TTL, max_retries=0)
    handle = live.start(MESSAGES, stream_id="again", model="gpt-4o-mini", recovery={"max_retries": 0})
    assert handle.wait(5) and isinstance(handle.error, ServerError)
    resumed = live.resume("again")
    chunks = iter(resumed)
    first = next(chunks)  # the new generation is under way
    wait_for_text(store, "again", BROKEN)
    reader = live.attach("again")  # another reader, e.g. a browser's reconnect
    followed = iter(reader)
    got = []
    while consumer_view(got) != BROKEN:  # it follows while the new generation is under way
        got.append(next(followed))
    gate.set()
    assert consumer_view([first, *chunks]) == FULL
    assert consumer_view(got + list(followed)) == FULL, "the reader followed the new generation, not the old error"
    assert (reader.finish_reason, reader.usage) == ("stop", USAGE)
    assert len(server.requests) == 2
