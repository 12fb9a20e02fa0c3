"""Live streams in one process, over loopback HTTP: ``client.start`` generates in the
background, ``client.attach`` follows it from any offset (exact text, the producer's
finish reason and usage), ``cancel_stream`` stops it, ``resume`` of a live id follows
instead of generating, and an unowned unfinished record is taken over exactly once.
Across processes: ``test_live_processes.py``."""

from __future__ import annotations

import threading
import time

import pytest

from recovery_store import DiskStore, MemoryStore
from streamcoord.errors import AuthenticationError, RecoveryFailed
from tests.loopback.test_recovery import (
    BROKEN,
    BROKEN_PIECES,
    FULL,
    KEPT,
    REST_PIECES,
    consumer_view,
    continuation_response,
)
from tests.support.fakeserver import Gate, error, openai_text

MESSAGES = [{"role": "user", "content": "Write two short paragraphs."}]
USAGE = {"prompt_tokens": 10, "completion_tokens": 6, "total_tokens": 16}
LEASE_TTL = 1.0  # short, so a dead producer's lease ends within a test (renewed every third of it, also under load)


@pytest.fixture(params=["memory", "disk"])
def store(request, tmp_path):
    made = MemoryStore() if request.param == "memory" else DiskStore(tmp_path / "store")
    yield made
    made.close()


@pytest.fixture
def live(client, store):
    def make(**kwargs):
        return client(recovery_store=store, lease_ttl=LEASE_TTL, **kwargs)

    return make


def gated_answer(gate):
    """The whole answer, held after BROKEN until ``gate`` is set."""
    return openai_text(BROKEN_PIECES + REST_PIECES, usage=USAGE, stall_after=len(BROKEN_PIECES), stall=Gate(gate))


def wait_for_text(store, stream_id, text, timeout=5.0):
    """Until the store holds ``text`` for ``stream_id`` (synchronised on the store's revisions)."""
    deadline = time.monotonic() + timeout
    revision = -1
    while time.monotonic() < deadline:
        record = store.load(stream_id)
        if record is not None and record.text == text:
            return
        revision = store.wait_for(stream_id, revision, 0.25)
    pytest.fail(f"the store never held {text!r}; it has {store.load(stream_id)!r}")


def test_attached_readers_at_several_offsets_get_the_exact_answer_of_one_generation(server, live, store):
    gate = threading.Event()
    server.enqueue(gated_answer(gate))
    client = live()
    handle = client.start(MESSAGES, stream_id="live-1", model="gpt-4o-mini")
    early = client.attach("live-1")  # at once after start returns: nothing stored yet
    wait_for_text(store, "live-1", BROKEN)
    offsets = [0, 7, len(BROKEN)]
    readers = [client.attach("live-1", offset=k) for k in offsets]
    gate.set()
    for offset, reader in zip(offsets + [0], readers + [early]):
        chunks = list(reader)
        assert consumer_view(chunks, FULL[:offset]) == FULL
        assert reader.text == FULL[offset:]
        assert (reader.finish_reason, reader.usage) == ("stop", USAGE)
    assert handle.wait(5) and handle.error is None and handle.text == FULL
    assert len(server.requests) == 1
    assert store.load("live-1") is None, "completed without keep: the record is gone"
    assert not store.leased("live-1")


def test_an_attach_after_completion_with_keep_gets_the_whole_answer(server, live, store):
    server.enqueue(openai_text(["Done ", "already."], usage=USAGE))
    client = live()
    handle = client.start(MESSAGES, stream_id="kept", model="gpt-4o-mini", recovery={"keep": True})
    assert handle.wait(5)
    reader = client.attach("kept")
    assert "".join(c.content for c in reader) == "Done already."
    assert (reader.finish_reason, reader.usage) == ("stop", USAGE)
    assert store.load("kept").status == "completed"
    assert len(server.requests) == 1


def test_start_on_a_live_id_says_to_attach_and_sends_nothing(server, live):
    gate = threading.Event()
    server.enqueue(gated_answer(gate))
    client = live()
    handle = client.start(MESSAGES, stream_id="busy", model="gpt-4o-mini")
    with pytest.raises(ValueError, match="attach to it"):
        client.start(MESSAGES, stream_id="busy", model="gpt-4o-mini")
    gate.set()
    assert handle.wait(5) and handle.text == FULL
    assert len(server.requests) == 1


def test_a_recovering_stream_chat_holds_its_id_until_it_ends_or_is_closed(server, live, store):
    gate = threading.Event()
    server.enqueue(gated_answer(gate), openai_text(["Again."]))
    client = live()
    stream = client.stream_chat(MESSAGES, model="gpt-4o-mini", stream_recovery=True, stream_id="held")
    with pytest.raises(ValueError, match="attach"):
        client.start(MESSAGES, stream_id="held", model="gpt-4o-mini")
    with pytest.raises(ValueError, match="attach"):
        client.stream_chat(MESSAGES, model="gpt-4o-mini", stream_recovery=True, stream_id="held")
    follower = client.attach("held")
    gate.set()
    assert "".join(c.content for c in stream) == FULL
    assert "".join(c.content for c in follower) == FULL and follower.finish_reason == "stop"
    # Ended: the id is free again, and a closed (never iterated) stream frees it too.
    unread = client.stream_chat(MESSAGES, model="gpt-4o-mini", stream_recovery=True, stream_id="held")
    unread.close()
    again = client.stream_chat(MESSAGES, model="gpt-4o-mini", stream_recovery=True, stream_id="held")
    assert "".join(c.content for c in again) == "Again."
    assert len(server.requests) == 2


def test_closing_an_attached_stream_leaves_the_generation_running(server, live, store):
    gate = threading.Event()
    server.enqueue(gated_answer(gate))
    client = live()
    handle = client.start(MESSAGES, stream_id="leave", model="gpt-4o-mini")
    reader = client.attach("leave")
    for chunk in reader:
        if chunk.content:
            break  # the browser went away
    assert reader.closed
    gate.set()
    assert handle.wait(5) and handle.error is None and handle.text == FULL


def test_cancel_stream_stops_the_producer_within_a_second_and_readers_end_there(server, live, store):
    gate = threading.Event()
    server.enqueue(gated_answer(gate))
    client = live()
    handle = client.start(MESSAGES, stream_id="stop-me", model="gpt-4o-mini")
    wait_for_text(store, "stop-me", BROKEN)
    reader = client.attach("stop-me")
    cancelled_at = time.monotonic()
    client.cancel_stream("stop-me")
    assert handle.wait(1.0), "the producer did not stop within 1 s"
    assert time.monotonic() - cancelled_at < 1.0
    assert server.connection_closed.wait(5)
    assert "".join(c.content for c in reader) == BROKEN and reader.finish_reason is None
    late = client.attach("stop-me")
    assert list(late) and late.text == BROKEN, "an attach to a cancelled stream ends there"
    assert len(server.requests) == 1, "nobody took the cancelled generation over"
    gate.set()


def test_resume_of_a_live_stream_follows_it_instead_of_generating_again(server, live, store):
    gate = threading.Event()
    server.enqueue(gated_answer(gate))
    client = live()
    handle = client.start(MESSAGES, stream_id="twice", model="gpt-4o-mini")
    wait_for_text(store, "twice", BROKEN)
    resumed = client.resume("twice", offset=len(BROKEN))
    gate.set()
    assert consumer_view(list(resumed), BROKEN) == FULL
    assert handle.wait(5) and handle.text == FULL
    assert len(server.requests) == 1


def test_the_producers_error_is_raised_by_attached_readers(server, live):
    server.enqueue(error(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}))
    client = live()
    handle = client.start(MESSAGES, stream_id="denied", model="gpt-4o-mini")
    reader = client.attach("denied")
    with pytest.raises(AuthenticationError, match="Incorrect API key") as caught:
        list(reader)
    assert caught.value.status == 401
    assert handle.wait(5) and isinstance(handle.error, AuthenticationError)


def test_an_attach_to_an_unknown_stream_is_recovery_failed(live):
    with pytest.raises(RecoveryFailed, match="no stored stream"):
        live().attach("never-started")


@pytest.mark.parametrize("readers", [1, 2])
def test_an_unowned_unfinished_record_is_taken_over_once(server, live, store, readers):
    # A stream with recovery whose consumer went away leaves a streaming record nobody owns,
    # as a killed process does (that case, across processes, is in test_live_processes).
    server.enqueue(
        openai_text(BROKEN_PIECES + REST_PIECES, stall_after=len(BROKEN_PIECES)),
        continuation_response("openai", FULL[len(BROKEN):]),
    )
    client = live()
    stream = client.stream_chat(
        MESSAGES, model="gpt-4o-mini", stream_recovery=True, stream_id="orphan", recovery={"strategy": "exact"}
    )
    seen = ""
    for chunk in stream:
        seen += chunk.content
        if seen == BROKEN:
            break
    assert server.connection_closed.wait(5)
    attached = [client.attach("orphan", offset=len(BROKEN)) for _ in range(readers)]
    results = [None] * readers

    def read(i):
        results[i] = consumer_view(list(attached[i]), BROKEN)

    threads = [threading.Thread(target=read, args=(i,)) for i in range(readers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == [FULL] * readers
    assert len(server.requests) == 2, "one continuation, however many readers"
    deadline = time.monotonic() + 5
    while store.leased("orphan") and time.monotonic() < deadline:
        store.wait_for("orphan", store.revision("orphan"), 0.1)
    assert not store.leased("orphan")


def test_a_reader_that_saw_more_than_is_stored_after_a_cut_is_rewound_to_it(server, live, store):
    kept = KEPT["paragraph"]
    server.enqueue(
        openai_text(BROKEN_PIECES + REST_PIECES, stall_after=len(BROKEN_PIECES)),
        continuation_response("openai", FULL[len(kept):]),
    )
    client = live()
    stream = client.stream_chat(MESSAGES, model="gpt-4o-mini", stream_recovery=True, stream_id="cut")
    seen = ""
    for chunk in stream:
        seen += chunk.content
        if seen == BROKEN:
            break
    store.replace_text("cut", kept)  # a producer's recovery cut the text back since
    reader = client.attach("cut", offset=len(BROKEN))
    chunks = list(reader)
    assert [c.metadata["recovery"]["rewind"] for c in chunks if "recovery" in c.metadata] == [len(BROKEN) - len(kept)]
    assert consumer_view(chunks, BROKEN) == FULL
    assert len(server.requests) == 2
