"""Lifecycle and timing over loopback: break stops the stream, the idle clock counts only the
network, on_metrics runs on a timer, and the end of the answer reaches the consumer at once."""

from __future__ import annotations

import socket
import threading
import time

import pytest

import streamcoord
import streamcoord._pipeline
from streamcoord._read_loop import DRAIN_SECONDS
from tests.conftest import MESSAGES, streamcoord_threads
from tests.support.fakeserver import (
    Response,
    Stall,
    anthropic_text,
    gemini_text,
    ollama_text,
    openai_text,
)

PIECES = ["Hello", ", ", "wor", "ld", "!"]
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-5", "gemini": "gemini-2.0-flash", "ollama": "llama3"}


def worker_of(stream):
    return next(t for t in streamcoord_threads() if t.name == f"streamcoord-{stream.stream_id}")


# -- break -------------------------------------------------------------------------------
@pytest.mark.parametrize("held_by", ["variable", "callback"])
def test_break_stops_worker_while_stream_is_referenced(server, client, held_by):
    server.enqueue(openai_text(PIECES, stall_after=2))
    seen = []
    options = {}
    if held_by == "callback":  # a closure over the stream, held by the worker itself
        options["on_metrics"] = lambda metrics: seen.append(stream.stream_id)
    stream = client().stream_chat(MESSAGES, model="m", timeout=30, **options)
    for chunk in stream:  # noqa: B007 - the loop is the point: break out of it
        thread = worker_of(stream)
        break
    assert chunk.content == "Hello"
    assert server.connection_closed.wait(1), "the upstream connection stayed open after break"
    thread.join(1)
    assert not thread.is_alive()
    assert stream.metrics.status == "cancelled"
    assert stream.closed


def test_one_held_iterator_pauses_and_goes_on(server, client):
    server.enqueue(openai_text(PIECES))
    stream = client().stream_chat(MESSAGES, model="m")
    it = iter(stream)
    for chunk in it:  # noqa: B007 - the loop is the point: break out of it
        break
    assert chunk.content == "Hello"
    assert next(it).content == ", "
    rest = [c.content for c in it]
    assert "".join(rest) == "world!"
    assert stream.text == "Hello, world!"
    assert stream.metrics.status == "completed"


def test_break_out_of_batches_stops_the_worker(server, client):
    server.enqueue(openai_text(PIECES, stall_after=2))
    stream = client().stream_chat(MESSAGES, model="m", timeout=30)
    for _batch in stream.batches():
        thread = worker_of(stream)
        break
    assert server.connection_closed.wait(1)
    thread.join(1)
    assert not thread.is_alive()


def test_worker_blocked_on_a_full_queue_stops_on_close(server, client, monkeypatch):
    monkeypatch.setattr(streamcoord._pipeline, "QUEUE_BATCHES", 2)
    server.enqueue(openai_text([f"p{i} " for i in range(200)], stall_after=200))
    stream = client().stream_chat(MESSAGES, model="m", timeout=30)
    it = iter(stream)
    next(it)  # started; the consumer now reads nothing, so the worker fills the queue and waits
    assert server.stalled.wait(5)
    thread = worker_of(stream)
    started = time.monotonic()
    stream.close()
    assert time.monotonic() - started < 1.0
    assert not thread.is_alive()
    assert server.connection_closed.wait(1)


# -- the idle clock ------------------------------------------------------------------------
def test_slow_consumer_of_a_long_fast_stream_never_times_out(server, client, monkeypatch):
    # A small queue fills at once, so the worker waits on the consumer far longer than the
    # idle timeout: that wait is not provider silence.
    monkeypatch.setattr(streamcoord._pipeline, "QUEUE_BATCHES", 2)
    pieces = [f"w{i} " for i in range(300)]
    server.enqueue(openai_text(pieces))
    stream = client().stream_chat(MESSAGES, model="m", timeout=0.3)
    it = iter(stream)
    next(it)
    time.sleep(0.8)  # the consumer is busy (this pause is the behaviour under test)
    for i, _chunk in enumerate(it):
        if i % 100 == 0:
            time.sleep(0.4)
    assert stream.text == "".join(pieces)
    assert stream.metrics.status == "completed"


def test_a_real_stall_still_times_out(server, client):
    server.enqueue(openai_text(PIECES, stall_after=2))
    stream = client().stream_chat(MESSAGES, model="m", timeout=0.3)
    started = time.monotonic()
    with pytest.raises(streamcoord.StreamTimeout, match="idle timeout"):
        for _chunk in stream:
            pass
    assert 0.25 < time.monotonic() - started < 1.0
    assert stream.text == "Hello, "


def test_total_deadline_holds_while_waiting_for_content(server, client):
    server.enqueue(openai_text(PIECES, stall_after=1))
    stream = client().stream_chat(MESSAGES, model="m", timeout=streamcoord.Timeout(idle=30, total=0.5))
    started = time.monotonic()
    with pytest.raises(streamcoord.StreamTimeout, match="total deadline"):
        list(stream)
    assert time.monotonic() - started < 0.5 + 2.0  # the deadline, not the 30 s idle timeout


# -- on_metrics on a timer -----------------------------------------------------------------
def test_on_metrics_runs_about_once_a_second_during_a_stall_and_once_at_the_end(server, client):
    resume = threading.Event()
    server.enqueue(openai_text(PIECES, stall_after=1, stall=Stall(resume, timeout=10)))
    calls = []
    stream = client().stream_chat(
        MESSAGES, model="m", timeout=30, on_metrics=lambda m: calls.append((time.monotonic(), m.status))
    )
    it = iter(stream)
    next(it)
    assert server.stalled.wait(2)
    stall_started = time.monotonic()
    while time.monotonic() - stall_started < 3.0:  # a 3 s stall: nothing arrives
        time.sleep(0.05)
    during = [t for t, status in calls if status == "streaming" and t >= stall_started]
    resume.set()
    assert "".join(c.content for c in it) == ", world!"
    assert 2 <= len(during) <= 4, calls
    gaps = [b - a for a, b in zip(during, during[1:])]
    # About a second apart; a loaded machine runs a tick a few hundred ms late.
    assert all(0.5 < gap < 1.5 for gap in gaps), gaps
    assert [status for _, status in calls][-1] == "completed"
    assert [status for _, status in calls].count("completed") == 1
    time.sleep(1.2)  # a report due after the end would have come by now
    assert [status for _, status in calls].count("completed") == 1
    assert calls[-1][1] == "completed"


def test_waiting_for_headers_reports_metrics_and_ends_at_the_total_deadline(client):
    silent = socket.create_server(("127.0.0.1", 0))  # accepts connections, never answers
    try:
        base_url = "http://127.0.0.1:%d/v1" % silent.getsockname()[1]
        calls = []
        stream = client(base_url=base_url).stream_chat(
            MESSAGES, model="m", timeout=streamcoord.Timeout(idle=30, total=2.5),
            on_metrics=lambda m: calls.append((time.monotonic(), m.status)),
        )
        started = time.monotonic()
        with pytest.raises(streamcoord.StreamTimeout):
            list(stream)
        assert 2.5 <= time.monotonic() - started < 2.5 + 2.0  # the deadline, not the 30 s idle timeout
    finally:
        silent.close()
    statuses = [status for _, status in calls]
    assert statuses == ["streaming", "streaming", "failed"], calls
    assert [round(t - started) for t, _ in calls[:2]] == [1, 2]


def test_reporting_streams_share_one_timer_thread_that_ends_with_them(server, client):
    server.default = openai_text(PIECES, stall_after=1)
    streams = [client().stream_chat(MESSAGES, model="m", timeout=30, on_metrics=lambda m: None) for _ in range(20)]
    for stream in streams:
        assert next(stream).content == "Hello"
    timers = [t for t in threading.enumerate() if t.name == "streamcoord-metrics"]
    assert len(timers) == 1
    for stream in streams:
        stream.close()
    timers[0].join(1)
    assert not timers[0].is_alive()


def test_a_slow_on_metrics_does_not_stop_another_streams_reports(server, client):
    server.default = openai_text(PIECES, stall_after=1, stall=Stall(threading.Event(), timeout=10))
    slow_called, slow_release = threading.Event(), threading.Event()
    slow_calls, other_calls = [], []
    two_more = threading.Semaphore(0)

    def slow(metrics):  # stuck in its first periodic call until the test lets it go
        slow_calls.append(metrics.status)
        if metrics.status == "streaming":
            slow_called.set()
            slow_release.wait(10)

    def other(metrics):
        other_calls.append((time.monotonic(), metrics.status))
        two_more.release()

    stuck = client().stream_chat(MESSAGES, model="m", timeout=30, on_metrics=slow)
    going = client().stream_chat(MESSAGES, model="m", timeout=30, on_metrics=other)
    try:
        assert next(stuck).content == next(going).content == "Hello"
        assert slow_called.wait(3)
        blocked_at = time.monotonic()
        for _ in range(2 + len(other_calls)):  # two reports after the slow call began, within 3.5 s
            assert two_more.acquire(timeout=max(blocked_at + 3.5 - time.monotonic(), 0)), other_calls
        assert len([t for t, _ in other_calls if t > blocked_at]) >= 2
    finally:
        slow_release.set()
        stuck.close()
        going.close()
    assert slow_calls.count("streaming") == 1  # skipped while its call ran, not queued up
    assert slow_calls[-1] == "cancelled" and slow_calls.count("cancelled") == 1
    assert [status for _, status in other_calls].count("cancelled") == 1 and other_calls[-1][1] == "cancelled"


def test_close_from_inside_on_metrics_ends_the_stream_at_once(server, client):
    server.enqueue(openai_text(PIECES, stall_after=1))
    called = []

    def stop(metrics):
        if not called:
            called.append(time.monotonic())
            stream.close()

    stream = client().stream_chat(MESSAGES, model="m", timeout=30, on_metrics=stop)
    assert [c.content for c in stream] == ["Hello"]
    assert time.monotonic() - called[0] < 5.0  # at once, not at the 30 s idle timeout
    assert stream.metrics.status == "cancelled"
    assert server.connection_closed.wait(1)


def test_track_metrics_alone_logs_the_metrics(server, client, caplog):
    caplog.set_level("INFO", logger="streamcoord")
    server.enqueue(openai_text(PIECES))
    assert "".join(c.content for c in client().stream_chat(MESSAGES, model="m", track_metrics=True)) == "Hello, world!"
    assert any(r.getMessage().startswith("metrics: completed") for r in caplog.records)


# -- the end of the answer -----------------------------------------------------------------
BUILDERS = {"openai": openai_text, "anthropic": anthropic_text, "gemini": gemini_text, "ollama": ollama_text}


@pytest.mark.parametrize("provider", sorted(BUILDERS))
def test_end_of_answer_reaches_the_consumer_at_once_when_the_body_stays_open(server, client, provider):
    answer = BUILDERS[provider](PIECES)
    kept_open = threading.Event()
    server.enqueue(Response(parts=answer.parts + (Stall(kept_open, timeout=10),), content_type=answer.content_type))
    started = time.monotonic()
    stream = client(provider).stream_chat(MESSAGES, model=MODELS[provider], timeout=30)
    for _chunk in stream:
        pass
    ended = time.monotonic()
    # The server notes the time once its last bytes are written; the consumer may be done
    # before that note is taken, which only makes the loop's end earlier.
    assert server.stalled.wait(5)
    kept_open.set()
    assert stream.text == "Hello, world!"
    assert stream.finish_reason == "stop"
    # From the moment the server sent the end event (the body stays open after it): well
    # before the drain would have let the loop end (half of DRAIN_SECONDS, a margin a
    # loaded machine needs and a loop that waits out the drain never meets).
    assert ended - server.stalled_at < DRAIN_SECONDS / 2
    assert stream.metrics.status == "completed"
    # duration_ms ends at the end event, not after the drain (up to DRAIN_SECONDS later).
    assert stream.metrics.duration_ms < (server.stalled_at - started + DRAIN_SECONDS / 2) * 1000


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_final_event_without_its_blank_line_completes_the_answer(server, client, provider):
    answer = BUILDERS[provider](PIECES)
    parts = list(answer.parts)
    assert parts[-1].endswith(b"\n\n")
    parts[-1] = parts[-1][:-1]  # the server forgot the last blank line, then ended the body cleanly
    server.enqueue(Response(parts=tuple(parts), content_type=answer.content_type))
    stream = client(provider).stream_chat(MESSAGES, model=MODELS[provider])
    assert "".join(c.content for c in stream) == "Hello, world!"
    assert stream.finish_reason == "stop"
    assert stream.metrics.status == "completed"
