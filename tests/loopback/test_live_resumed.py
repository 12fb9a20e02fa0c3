"""A live stream taken up again, over loopback HTTP: readers attached while a failed stream
is resumed follow the new generation, not the old failure (memory, disk, a real
redis-server); a producer whose lease lapsed while a successor finished the answer leaves
the successor's answer as it is; the producer's warnings carry stream_id and provider."""

from __future__ import annotations

import logging
import threading
import time
import uuid

import pytest

from recovery_store import DiskStore, MemoryStore
from streamcoord.errors import ServerError
from tests.loopback.test_live_ownership import pausable
from tests.loopback.test_live_streams import LEASE_TTL, MESSAGES, USAGE, gated_answer, wait_for_text
from tests.loopback.test_recovery import BROKEN, FULL, KEPT, consumer_view
from tests.support.fakeserver import error, openai_text
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


@pytest.mark.parametrize("kind", ["memory", "disk"])
def test_a_producer_whose_lease_lapsed_leaves_a_finished_successors_answer_as_it_is(server, client, tmp_path, kind):
    kept = KEPT["paragraph"]
    wake_old = threading.Event()
    server.enqueue(gated_answer(wake_old), openai_text([FULL[len(kept):]], usage=USAGE))
    store = pausable(kind, tmp_path)
    live = client(recovery_store=store, lease_ttl=LEASE_TTL)
    handle = live.start(MESSAGES, stream_id="lapsed", model="gpt-4o-mini")
    wait_for_text(store, "lapsed", BROKEN)
    store.paused.set()  # the first producer's renewals hang past its lease
    successor = live.attach("lapsed")  # takes the generation over once the lease expires, and finishes it
    assert consumer_view(list(successor)) == FULL
    assert len(server.requests) == 2 and store.outcome("lapsed")["text"] == FULL
    store.resumed.set()  # the first producer wakes: its renewal fails, and it tries to reclaim the lease
    wake_old.set()
    assert handle.wait(5)
    assert store.outcome("lapsed")["text"] == FULL, "the successor's outcome stays"
    late = live.attach("lapsed")
    assert consumer_view(list(late)) == FULL and late.finish_reason == "stop"
    deadline = time.monotonic() + 5  # the successor's own end gives its lease up too
    while store.leased("lapsed") and time.monotonic() < deadline:
        store.wait_for("lapsed", store.revision("lapsed"), 0.1)
    assert not store.leased("lapsed"), "the reclaimed lease was given back"


class FlakyLeases(MemoryStore):
    """A MemoryStore whose first lease renewal and every release fail (a store hiccup)."""

    def __init__(self):
        super().__init__()
        self.renewals = 0

    def renew_lease(self, stream_id, token, ttl):
        self.renewals += 1
        if self.renewals == 1:
            raise OSError("the store is briefly unreachable")
        return super().renew_lease(stream_id, token, ttl)

    def release_lease(self, stream_id, token):
        raise OSError("the store is briefly unreachable")


def test_a_live_producers_warnings_carry_its_stream_id_and_provider(server, client, caplog):
    server.enqueue(openai_text(["Hel", "lo."], usage=USAGE))
    live = client(recovery_store=FlakyLeases(), lease_ttl=LEASE_TTL)
    with caplog.at_level(logging.WARNING, logger="streamcoord"):
        handle = live.start(MESSAGES, stream_id="noted", model="gpt-4o-mini")
        assert handle.wait(5) and handle.text == "Hello."
    warnings = [r for r in caplog.records if r.module == "_live"]
    assert {r.getMessage().split(" of ")[0] for r in warnings} == {"renewing the lease", "releasing the lease"}
    assert all((r.stream_id, r.provider) == ("noted", "openai") for r in warnings)
