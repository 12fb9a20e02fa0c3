"""Who produces a live stream, over loopback HTTP: one owner at a time whatever the clocks
do, a producer that lost its lease writes nothing more, a take-over is a stream with the
live deadline that the provider resumes natively where it can, a resume just after the end
returns the answer, and a reader announces the producer's recoveries as its own."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

import streamcoord._live_client as live_client_module
from recovery_store import DiskStore, MemoryStore
from streamcoord.errors import StreamTimeout
from streamcoord.events import Rewind, TextDelta
from tests.loopback.test_live_streams import LEASE_TTL, MESSAGES, USAGE, gated_answer, wait_for_text
from tests.loopback.test_recovery import BROKEN, BROKEN_PIECES, FULL, KEPT, REST_PIECES, consumer_view, rewinds
from tests.support.fakeserver import Gate, openai_text
from tests.support.responses_wire import ResponsesStream


def wall_clock_stepped(seconds):
    """``time.time`` after the machine's clock was stepped by ``seconds`` (NTP, a user)."""
    real = time.time
    return lambda: real() + seconds


def test_a_wall_clock_step_never_gives_a_disk_stream_a_second_producer(server, client, tmp_path, monkeypatch):
    gate = threading.Event()
    server.enqueue(gated_answer(gate))
    store = DiskStore(tmp_path / "store")
    live = client(recovery_store=store, lease_ttl=LEASE_TTL)
    handle = live.start(MESSAGES, stream_id="clock", model="gpt-4o-mini")
    wait_for_text(store, "clock", BROKEN)
    monkeypatch.setattr(time, "time", wall_clock_stepped(60))  # far past lease_ttl
    reader = live.attach("clock")
    chunks = iter(reader)
    first = next(chunks)
    gate.set()
    assert consumer_view([first, *chunks]) == FULL
    assert handle.wait(5) and handle.text == FULL
    assert len(server.requests) == 1, "one generation: nobody took the live producer's place"


def pausable(kind, tmp_path):
    """A store of ``kind`` on which the first producer's process "pauses" (GC, SIGSTOP):
    while ``paused`` is set its lease renewals hang until ``resumed``; ``stale_write`` is set
    when text is appended during the pause (only the paused producer has any to write)."""
    base = MemoryStore if kind == "memory" else DiskStore

    class Pausable(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args):
            super().__init__(*args)
            self.paused, self.resumed, self.stale_write = threading.Event(), threading.Event(), threading.Event()
            self.first = None

        def acquire_lease(self, stream_id, ttl):
            token = super().acquire_lease(stream_id, ttl)
            self.first = self.first or token
            return token

        def renew_lease(self, stream_id, token, ttl):
            if token == self.first and self.paused.is_set():
                self.resumed.wait(10)
            return super().renew_lease(stream_id, token, ttl)

        def append(self, stream_id, text, **kwargs):
            try:
                return super().append(stream_id, text, **kwargs)
            finally:
                if text and self.paused.is_set() and not self.resumed.is_set():
                    self.stale_write.set()

    return Pausable() if kind == "memory" else Pausable(tmp_path / "store")


@pytest.mark.parametrize("kind", ["memory", "disk"])
def test_a_producer_paused_past_its_lease_writes_nothing_into_its_successors_answer(server, client, tmp_path, kind):
    kept = KEPT["paragraph"]
    wake_old, go_on = threading.Event(), threading.Event()
    server.enqueue(
        gated_answer(wake_old),  # the old producer's answer goes on once it wakes up
        openai_text([FULL[len(kept):]], usage=USAGE, stall_after=0, stall=Gate(go_on)),  # the successor's
    )
    store = pausable(kind, tmp_path)
    live = client(recovery_store=store, lease_ttl=LEASE_TTL)
    handle = live.start(MESSAGES, stream_id="paused", model="gpt-4o-mini")
    wait_for_text(store, "paused", BROKEN)
    store.paused.set()
    reader = live.attach("paused")  # takes the generation over once the paused lease expires
    chunks = iter(reader)
    first = next(chunks)
    assert server.wait_for_requests(2, timeout=10), "nobody took the expired lease over"
    wait_for_text(store, "paused", kept)
    wake_old.set()  # the old producer wakes up and goes on writing what it reads
    assert store.stale_write.wait(10), "the old producer never tried to write"
    store.resumed.set()
    go_on.set()
    assert consumer_view([first, *chunks]) == FULL, "one generation's text, never two mixed"
    assert (reader.finish_reason, reader.usage) == ("stop", USAGE)
    assert handle.wait(5)
    assert len(server.requests) == 2, "one continuation"


OTHER_ENDING = "Another ending."


def taken_over(server, client, tmp_path):
    """A stream read directly whose producer pauses past its lease right after BROKEN, and
    an attach that takes the generation over (its continuation stalls until ``go_on``).
    Returns (store, direct, what direct gave so far, attached, its first chunk, wake_old
    (releases the old producer's stalled answer), go_on)."""
    wake_old, go_on = threading.Event(), threading.Event()
    server.enqueue(gated_answer(wake_old), openai_text([OTHER_ENDING], usage=USAGE, stall_after=0, stall=Gate(go_on)))
    store = pausable("memory", tmp_path)
    live = client(recovery_store=store, lease_ttl=LEASE_TTL)
    direct = live.stream_chat(MESSAGES, model="gpt-4o-mini", stream_recovery=True, stream_id="read")
    got = []
    while consumer_view(got) != BROKEN:
        got.append(next(direct))
    store.paused.set()
    attached = iter(live.attach("read"))
    first = next(attached)  # takes the generation over once the paused lease expires
    assert server.wait_for_requests(2, timeout=10)
    wait_for_text(store, "read", KEPT["paragraph"])
    return store, direct, got, attached, first, wake_old, go_on


def test_a_directly_read_stream_that_lost_its_lease_still_gives_its_reader_its_own_answer(server, client, tmp_path):
    store, direct, got, attached, first, wake_old, go_on = taken_over(server, client, tmp_path)
    wake_old.set()
    assert store.stale_write.wait(10)
    store.resumed.set()
    go_on.set()
    assert consumer_view(got + list(direct)) == FULL, "its reader gets its own answer, whole"
    assert consumer_view([first, *attached]) == KEPT["paragraph"] + OTHER_ENDING, \
        "attached readers follow only the new producer"
    assert len(server.requests) == 2


def test_a_stream_closed_after_another_producer_took_it_over_says_so(server, client, tmp_path, caplog):
    # Closing gives the lease up, and a close after the lease was lost (not given up) must
    # still say that another producer took the stream over.
    store, direct, _, attached, first, wake_old, go_on = taken_over(server, client, tmp_path)
    direct.close()
    wake_old.set()
    store.resumed.set()
    go_on.set()
    assert consumer_view([first, *attached]) == KEPT["paragraph"] + OTHER_ENDING, \
        "attached readers follow only the new producer"
    assert any("to another producer before it was closed" in r.getMessage() for r in caplog.records), caplog.text


def test_an_attach_takes_a_background_response_over_natively(server, client):
    wire = ResponsesStream("resp_bg", background=True).text(["Hel", "lo ", "there"]).completed()
    first = wire.response(drop_after=wire.seq_of("response.output_text.delta", 1))
    server.enqueue(dataclasses.replace(first, parts=tuple(first.parts[:-1]) + (Gate(threading.Event()),)))
    store = MemoryStore()
    live = client("openai_responses", base_url=server.base_url + "/v1", recovery_store=store)
    stream = live.stream_chat(
        MESSAGES, model="gpt-5-mini", background=True, stream_recovery=True, stream_id="bg-orphan"
    )
    seen = ""
    for chunk in stream:
        seen += chunk.content
        if seen == "Hello ":
            break  # this process goes away; the record stays, with where the provider can resume
    assert server.connection_closed.wait(5)
    state = store.load("bg-orphan").meta["resume_state"]  # where the provider can replay from
    assert state["response_id"] == "resp_bg"
    after = state["sequence_number"]
    server.enqueue(wire.response(start_after=after))
    reader = live.attach("bg-orphan", offset=len(seen))
    assert consumer_view(list(reader), seen) == "Hello there"  # rewound to what the state covers
    assert reader.finish_reason == "stop"
    taken_over = server.requests[-1]
    assert len(server.requests) == 2
    assert (taken_over.method, taken_over.path) == ("GET", "/v1/responses/resp_bg")
    assert taken_over.query == {"stream": "true", "starting_after": str(after)}


def leave_unfinished(live, stream_id):
    """A stream with recovery whose consumer went away after BROKEN: an unowned record."""
    stream = live.stream_chat(MESSAGES, model="gpt-4o-mini", stream_recovery=True, stream_id=stream_id)
    seen = ""
    for chunk in stream:
        seen += chunk.content
        if seen == BROKEN:
            break


def test_a_taken_over_generation_that_never_ends_meets_the_live_deadline(server, client, monkeypatch):
    monkeypatch.setattr(live_client_module, "LIVE_TOTAL_SECONDS", 1.0)
    server.enqueue(
        openai_text(BROKEN_PIECES + REST_PIECES, stall_after=len(BROKEN_PIECES)),
        openai_text(["Third.", " And more"], stall_after=1, stall=Gate(threading.Event(), timeout=10)),
    )
    live = client(recovery_store=MemoryStore(), lease_ttl=LEASE_TTL)
    leave_unfinished(live, "endless")
    assert server.connection_closed.wait(5)
    reader = live.attach("endless", offset=len(BROKEN))
    began = time.monotonic()
    with pytest.raises(StreamTimeout, match="deadline"):
        list(reader)
    assert time.monotonic() - began < 5, "the take-over had no total deadline"


def test_a_resume_just_after_a_live_stream_completed_returns_its_answer(server, client):
    server.enqueue(openai_text(BROKEN_PIECES + REST_PIECES, usage=USAGE))
    store = MemoryStore()
    live = client(recovery_store=store, lease_ttl=LEASE_TTL)
    handle = live.start(MESSAGES, stream_id="just-done", model="gpt-4o-mini")
    assert handle.wait(5) and store.load("just-done") is None, "completed without keep"
    resumed = live.resume("just-done", offset=7)  # a browser reconnecting just after the end
    assert consumer_view(list(resumed), FULL[:7]) == FULL
    assert (resumed.finish_reason, resumed.usage) == ("stop", USAGE)
    assert len(server.requests) == 1


def read_until_broken(events, chunks):
    """What an events reader and a chunks reader have shown once each has BROKEN, the
    producer's text before it breaks: (events, chunks)."""
    first_events, first_chunks, text = [], [], ""
    while text != BROKEN:
        first_events.append(next(events))
        text += first_events[-1].text if isinstance(first_events[-1], TextDelta) else ""
    while consumer_view(first_chunks) != BROKEN:
        first_chunks.append(next(chunks))
    return first_events, first_chunks


def test_a_reader_announces_the_producers_recovery_with_its_attempt_and_strategy(server, client):
    kept = KEPT["paragraph"]
    drop = threading.Event()
    server.enqueue(
        # The connection is lost after BROKEN, once ``drop`` is set.
        openai_text(BROKEN_PIECES + REST_PIECES, stall_after=len(BROKEN_PIECES), stall=Gate(drop),
                    drop_after=len(BROKEN_PIECES)),
        openai_text([FULL[len(kept):]], usage=USAGE),
    )
    store = MemoryStore()
    live = client(recovery_store=store, lease_ttl=LEASE_TTL)
    handle = live.start(MESSAGES, stream_id="rewound", model="gpt-4o-mini")
    wait_for_text(store, "rewound", BROKEN)
    as_events, as_chunks = live.attach("rewound"), live.attach("rewound")
    events, chunks = iter(as_events.events()), iter(as_chunks)
    first_events, first_chunks = read_until_broken(events, chunks)
    drop.set()
    all_events, all_chunks = first_events + list(events), first_chunks + list(chunks)
    expected = {"attempt": 1, "strategy": "paragraph", "rewind": len(BROKEN) - len(kept)}
    assert [e for e in all_events if isinstance(e, Rewind)] == [Rewind(expected["rewind"], 1, "paragraph")]
    assert rewinds(all_chunks) == [expected]
    assert consumer_view(all_chunks) == FULL and as_events.text == FULL
    assert handle.wait(5) and len(server.requests) == 2


class LateReadersStore(MemoryStore):
    """A MemoryStore whose attached readers, once ``hold`` is set, are scheduled late: each
    one woken by a write looks only after the producer has written ``until`` again, and
    the producer ends only after both readers looked (``looked``)."""

    def __init__(self, until):
        super().__init__()
        self.until, self.hold, self.rewritten, self.looked = until, threading.Event(), threading.Event(), threading.Event()
        self._readers = set()

    def append(self, stream_id, text, *, lease=None):
        super().append(stream_id, text, lease=lease)
        record = self.load(stream_id)
        if self.hold.is_set() and record is not None and record.text == self.until:
            self.rewritten.set()

    def wait_for(self, stream_id, after, timeout):
        revision = super().wait_for(stream_id, after, timeout)
        if self.hold.is_set():
            self.rewritten.wait(10)
        return revision

    def read_text(self, stream_id, cursor=None):
        read = super().read_text(stream_id, cursor)
        if self.rewritten.is_set() and threading.current_thread().name.startswith("streamcoord-attach-"):
            self._readers.add(threading.get_ident())
            if len(self._readers) == 2:
                self.looked.set()
        return read


def test_a_reader_that_looks_only_after_the_continuation_rewrote_the_same_words_announces_the_cut(server, client):
    kept = KEPT["paragraph"]
    assert FULL.startswith(BROKEN), "the continuation writes the cut words again"
    drop, store = threading.Event(), LateReadersStore(FULL)
    server.enqueue(
        openai_text(BROKEN_PIECES + REST_PIECES, stall_after=len(BROKEN_PIECES), stall=Gate(drop),
                    drop_after=len(BROKEN_PIECES)),
        openai_text([FULL[len(kept):]], usage=USAGE, stall_after=1, stall=Gate(store.looked)),
    )
    live = client(recovery_store=store, lease_ttl=LEASE_TTL)
    handle = live.start(MESSAGES, stream_id="late", model="gpt-4o-mini")
    wait_for_text(store, "late", BROKEN)
    as_events, as_chunks = live.attach("late"), live.attach("late")
    events, chunks = iter(as_events.events()), iter(as_chunks)
    first_events, first_chunks = read_until_broken(events, chunks)
    store.hold.set()
    drop.set()
    all_events, all_chunks = first_events + list(events), first_chunks + list(chunks)
    assert store.looked.is_set(), "the readers looked only after the rewrite"
    expected = {"attempt": 1, "strategy": "paragraph", "rewind": len(BROKEN) - len(kept)}
    assert [e for e in all_events if isinstance(e, Rewind)] == [Rewind(expected["rewind"], 1, "paragraph")]
    assert rewinds(all_chunks) == [expected]
    assert consumer_view(all_chunks) == FULL and as_events.text == FULL
    assert handle.wait(5) and len(server.requests) == 2


def test_a_recovering_stream_read_after_its_lease_lapsed_still_gives_the_whole_answer(server, client):
    server.enqueue(openai_text(BROKEN_PIECES + REST_PIECES, usage=USAGE))
    store = MemoryStore()
    live = client(recovery_store=store, lease_ttl=0.2)
    stream = live.stream_chat(MESSAGES, model="gpt-4o-mini", stream_recovery=True, stream_id="late")
    deadline = time.monotonic() + 5
    while store.leased("late") and time.monotonic() < deadline:  # the caller is slow to start reading
        store.wait_for("late", store.revision("late"), 0.05)
    assert not store.leased("late")
    assert "".join(c.content for c in stream) == FULL, "nobody else took the lease: the producer takes it again"
    assert (stream.finish_reason, stream.usage) == ("stop", USAGE)
