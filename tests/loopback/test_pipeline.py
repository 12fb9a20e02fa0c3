"""The seed features over real loopback HTTP: metrics, transform_chunk, validate_chunk,
buffer_chunks, on_error, logging, and the direct ``StreamingCoordinator`` API."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import threading
import time

import pytest
import requests

import streamcoord
from adapters.base import Adapter, EventParser, HTTPRequest
from recovery_store import MemoryStore
from streamcoord import Chunk, StreamingCoordinator
from tests.conftest import API_KEY, MESSAGES
from tests.support.fakeserver import (
    Drop,
    Gate,
    Response,
    Stall,
    anthropic_text,
    error,
    gemini_text,
    mistral_text,
    ollama_text,
    openai_text,
    sse,
)

PIECES = ["Hello", ", ", "wor", "ld", "!"]
TEXT = "".join(PIECES)
SEVEN = ["a", "b", "c", "d", "e", "f", "g"]
USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
METRIC_FIELDS = {
    "stream_id", "provider", "status", "duration_ms", "chunks_received", "bytes_received", "errors",
    "chunks_per_second", "bytes_per_second", "time_to_first_chunk_ms", "retries", "recoveries",
}
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-5", "gemini": "gemini-2.0-flash",
          "ollama": "llama3", "mistral": "mistral-small-latest"}
BUILDERS = {"openai": openai_text, "anthropic": anthropic_text, "gemini": gemini_text,
            "ollama": ollama_text, "mistral": mistral_text}
PROVIDERS = sorted(BUILDERS)
FINAL = {"completed", "failed", "cancelled"}


def body_bytes(response: Response) -> bytes:
    return b"".join(p for p in response.parts if isinstance(p, bytes))


def finals(calls):
    """The statuses of the end-of-stream calls (periodic "streaming" calls left out, so a slow
    machine that stretches a short stream past a second cannot fail a test)."""
    assert calls and calls[-1].status in FINAL, calls
    return [m.status for m in calls if m.status != "streaming"]


def openai_event(text, index=0):
    return {"id": "c1", "object": "chat.completion.chunk", "model": "gpt-4o-mini",
            "choices": [{"index": index, "delta": {"content": text}, "finish_reason": None}]}


class NoNetwork(requests.Session):
    """A session that fails the test if anything is sent: option errors come before I/O."""

    def request(self, *args, **kwargs):
        raise AssertionError("a request was sent")


def offline_client():
    return streamcoord.Client("openai", api_key=API_KEY, base_url="http://127.0.0.1:9/v1", session=NoNetwork())


def streamcoord_records(caplog):
    return [r for r in caplog.records if r.name == "streamcoord"]


# =========================================================================== metrics
@pytest.mark.parametrize("provider", PROVIDERS)
def test_metrics_count_every_body_byte_and_every_parsed_chunk(server, client, provider):
    response = BUILDERS[provider](PIECES)
    server.enqueue(response)
    calls = []
    stream = client(provider).stream_chat(MESSAGES, model=MODELS[provider], track_metrics=True,
                                          on_metrics=calls.append)
    chunks = list(stream)
    assert stream.text == TEXT
    m = stream.metrics
    assert m.bytes_received == len(body_bytes(response))
    assert m.chunks_received == len(chunks)
    assert m.provider == provider
    assert calls[-1] == m  # the final call saw the same (frozen) figures


def test_bytes_received_counts_a_body_without_chunked_framing(server, client):
    data = body_bytes(openai_text(PIECES, usage=True))
    server.enqueue(Response(parts=(data[:100], data[100:]), chunked=False))
    stream = client().stream_chat(MESSAGES, model="m", track_metrics=True)
    assert "".join(c.content for c in stream) == TEXT
    assert stream.metrics.bytes_received == len(data)


def test_metrics_snapshot_has_every_field_with_consistent_values(server, client):
    server.enqueue(openai_text(PIECES, usage=True))
    calls = []
    stream = client().stream_chat(MESSAGES, model="m", stream_id="metrics-1", track_metrics=True,
                                  on_metrics=calls.append)
    chunks = list(stream)
    m = stream.metrics
    d = m.as_dict()
    assert set(d) == METRIC_FIELDS
    assert d == dataclasses.asdict(m)
    assert json.loads(json.dumps(d)) == d  # plain, JSON-ready values
    assert m.stream_id == "metrics-1" and m.provider == "openai"
    assert m.status == "completed"
    assert m.errors == 0 and m.retries == 0 and m.recoveries == 0
    assert m.chunks_received == len(chunks) > 0
    assert m.duration_ms > 0
    assert m.time_to_first_chunk_ms is not None and 0 <= m.time_to_first_chunk_ms <= m.duration_ms
    seconds = m.duration_ms / 1000.0
    assert m.chunks_per_second == pytest.approx(m.chunks_received / seconds, rel=1e-3)
    assert m.bytes_per_second == pytest.approx(m.bytes_received / seconds, rel=1e-3)
    assert finals(calls) == ["completed"]


def test_time_to_first_chunk_includes_the_wait_for_the_first_content(server, client):
    parts = openai_text(PIECES).parts
    server.enqueue(Response(parts=(parts[0], Stall(timeout=0.2)) + parts[1:]))
    stream = client().stream_chat(MESSAGES, model="m", track_metrics=True)
    list(stream)
    assert stream.metrics.time_to_first_chunk_ms >= 200


def test_time_to_first_chunk_is_none_until_a_chunk_arrives(server, client):
    server.enqueue(error(400, {"error": {"message": "bad request"}}))
    stream = client().stream_chat(MESSAGES, model="m", track_metrics=True)
    with pytest.raises(streamcoord.APIError):
        list(stream)
    assert stream.metrics.time_to_first_chunk_ms is None
    assert stream.metrics.chunks_received == 0
    assert stream.metrics.errors == 1


def test_metrics_count_a_429_retry(server, client, sleeps):
    server.enqueue(error(429, {"error": {"message": "slow down", "type": "rate_limit_error"}},
                         headers={"Retry-After": "0"}),
                   openai_text(PIECES))
    calls = []
    stream = client().stream_chat(MESSAGES, model="m", on_metrics=calls.append)
    assert "".join(c.content for c in stream) == TEXT
    assert sleeps == [0.0]
    assert stream.metrics.retries == 1
    assert stream.metrics.errors == 1  # the 429 answer
    assert stream.metrics.status == "completed"
    assert finals(calls) == ["completed"] and calls[-1].retries == 1


def test_on_metrics_is_called_periodically_while_streaming_and_once_at_the_end(server, client):
    parts = openai_text(["x"] * 32, usage=True).parts
    paced = []
    for part in parts:
        paced += [part, Stall(timeout=0.05)]  # about 1.8 s of server pacing in all
    server.enqueue(Response(parts=tuple(paced)))
    calls = []
    stream = client().stream_chat(MESSAGES, model="m", track_metrics=True, on_metrics=calls.append)
    started = time.monotonic()
    assert stream.text == "" and "".join(c.content for c in stream) == "x" * 32
    elapsed = time.monotonic() - started
    assert elapsed >= 1.5  # the pacing really happened
    periodic, final = calls[:-1], calls[-1]
    assert final.status == "completed"
    assert [m for m in calls if m.status in FINAL] == [final]  # exactly one final call
    assert len(periodic) >= 1 and all(m.status == "streaming" for m in periodic)
    assert len(periodic) <= int(elapsed) + 1  # about once a second, not per chunk
    counts = [m.chunks_received for m in calls]
    assert counts == sorted(counts) and periodic[0].chunks_received < final.chunks_received
    assert all(m.duration_ms < final.duration_ms for m in periodic)
    assert stream.metrics == final


def test_on_metrics_keeps_reporting_while_the_provider_sends_only_pings(server, client, monkeypatch):
    """E.g. Anthropic sends only pings while the model thinks: the figures must not go silent."""
    monkeypatch.setattr(streamcoord._metrics, "METRICS_INTERVAL", 0.2)  # the documented cadence, shortened
    parts = openai_text(["a", "b", "c"]).parts
    pings = []
    for _ in range(12):  # about 0.6 s of keep-alives between "a" and "b": three intervals
        pings += [Stall(timeout=0.05), b": ping\n\n"]
    server.enqueue(Response(parts=parts[:2] + tuple(pings) + parts[2:]))
    calls = []
    stream = client().stream_chat(MESSAGES, model="m", on_metrics=calls.append)
    assert "".join(c.content for c in stream) == "abc"
    during_pings = [m for m in calls if m.status == "streaming" and m.chunks_received == 1]
    assert during_pings, [(m.status, m.chunks_received, m.duration_ms) for m in calls]


def test_on_metrics_final_call_is_failed_after_5xx_retries(server, client, sleeps):
    for _ in range(3):
        server.enqueue(error(500, {"error": {"message": "boom", "type": "server_error"}}))
    calls = []
    stream = client().stream_chat(MESSAGES, model="m", track_metrics=True, on_metrics=calls.append)
    with pytest.raises(streamcoord.ServerError):
        list(stream)
    assert finals(calls) == ["failed"]
    assert calls[-1].retries == 2 and calls[-1].errors == 3
    assert stream.metrics.status == "failed"


def test_on_metrics_final_call_is_failed_after_a_drop_mid_body(server, client):
    server.enqueue(openai_text(PIECES, drop_after=3))
    calls = []
    stream = client().stream_chat(MESSAGES, model="m", on_metrics=calls.append)
    got = []
    with pytest.raises(streamcoord.ConnectionLost):
        for chunk in stream:
            got.append(chunk)
    assert finals(calls) == ["failed"]
    assert calls[-1].chunks_received == len(got) == 3


def test_on_metrics_final_call_is_cancelled_on_early_close(server, client):
    server.enqueue(openai_text(PIECES, stall_after=2))
    calls = []
    stream = client().stream_chat(MESSAGES, model="m", on_metrics=calls.append)
    assert next(stream).content == "Hello"
    assert server.stalled.wait(2)
    stream.close()
    assert finals(calls) == ["cancelled"]
    assert stream.metrics.status == "cancelled"
    assert server.connection_closed.wait(2)


def test_exception_in_on_metrics_is_logged_and_the_stream_completes(server, client, caplog):
    caplog.set_level(logging.DEBUG, logger="streamcoord")
    server.enqueue(openai_text(PIECES))

    def broken(metrics):
        raise RuntimeError("metrics sink is down")

    stream = client().stream_chat(MESSAGES, model="m", on_metrics=broken)
    assert "".join(c.content for c in stream) == TEXT
    assert stream.metrics.status == "completed"
    failures = [r for r in streamcoord_records(caplog) if r.levelno >= logging.ERROR]
    assert len(failures) == 1
    record = failures[0]
    assert "on_metrics" in record.getMessage()
    assert record.exc_info and isinstance(record.exc_info[1], RuntimeError)
    assert record.stream_id == stream.stream_id and record.provider == "openai"


def test_stream_metrics_is_the_latest_snapshot_while_streaming(server, client):
    gate = threading.Event()
    response = openai_text(PIECES, stall_after=2, stall=Gate(gate))
    server.enqueue(response)
    stream = client().stream_chat(MESSAGES, model="m", track_metrics=True)
    assert stream.metrics is None or stream.metrics.chunks_received == 0
    assert [next(stream).content, next(stream).content] == ["Hello", ", "]
    before_gate = response.parts[:response.parts.index(Gate(gate))]
    first = stream.metrics
    assert first.status == "streaming"
    assert first.chunks_received == 2
    assert first.bytes_received == len(b"".join(before_gate))
    second = stream.metrics
    assert second.duration_ms >= first.duration_ms  # a live snapshot, not a frozen one
    gate.set()
    rest = list(stream)
    final = stream.metrics
    assert final.status == "completed"
    assert final.chunks_received == 2 + len(rest)
    assert final.bytes_received == len(body_bytes(response))


def test_on_metrics_without_track_metrics_turns_tracking_on(server, client):
    server.enqueue(openai_text(PIECES))
    calls = []
    stream = client().stream_chat(MESSAGES, model="m", on_metrics=calls.append)
    list(stream)
    assert finals(calls) == ["completed"]
    assert calls[-1].chunks_received > 0


def test_track_metrics_false_means_on_metrics_is_never_called(server, client):
    server.enqueue(openai_text(PIECES))
    calls = []
    stream = client().stream_chat(MESSAGES, model="m", track_metrics=False, on_metrics=calls.append)
    assert "".join(c.content for c in stream) == TEXT
    assert calls == []


# =========================================================================== transform_chunk
def test_transform_changes_what_the_consumer_gets(server, client):
    server.enqueue(openai_text(PIECES, usage=True))

    def shout(chunk):
        return dataclasses.replace(chunk, content=chunk.content.upper(), metadata={**chunk.metadata, "shouted": True})

    stream = client().stream_chat(MESSAGES, model="m", transform_chunk=shout)
    chunks = list(stream)
    assert "".join(c.content for c in chunks) == TEXT.upper()
    assert all(c.metadata["shouted"] for c in chunks)
    assert stream.text == TEXT.upper()
    assert stream.finish_reason == "stop" and stream.usage == USAGE


def test_transform_returning_none_skips_the_chunk_but_keeps_finish_reason_and_usage(server, client):
    server.enqueue(openai_text(PIECES, usage=True))

    def drop_empty_and_wor(chunk):
        if not chunk.content or chunk.content == "wor":
            return None  # the finish and usage chunks (no content) are skipped too
        return chunk

    stream = client().stream_chat(MESSAGES, model="m", transform_chunk=drop_empty_and_wor, track_metrics=True)
    chunks = list(stream)
    assert [c.content for c in chunks] == ["Hello", ", ", "ld", "!"]
    assert stream.text == "Hello, ld!"
    assert stream.finish_reason == "stop"
    assert stream.usage == USAGE
    assert stream.metrics.chunks_received > len(chunks)  # skipped chunks were still received


def test_transform_that_raises_ends_the_stream_with_callback_error(server, client):
    server.enqueue(openai_text(PIECES))
    raised = []

    def fails_on_wor(chunk):
        if chunk.content == "wor":
            exc = ValueError("cannot handle 'wor'")
            raised.append(exc)
            raise exc
        return chunk

    stream = client().stream_chat(MESSAGES, model="m", transform_chunk=fails_on_wor)
    got = []
    with pytest.raises(streamcoord.CallbackError) as info:
        for chunk in stream:
            got.append(chunk.content)
    assert got == ["Hello", ", "]  # what was transformed before the failure was delivered
    assert info.value.callback == "transform_chunk"
    assert info.value.__cause__ is raised[0]
    assert "ValueError" in str(info.value)
    assert stream.metrics.status == "failed"


def test_transform_returning_a_non_chunk_says_what_to_return(server, client):
    server.enqueue(openai_text(PIECES))
    stream = client().stream_chat(MESSAGES, model="m", transform_chunk=lambda chunk: chunk.content)
    with pytest.raises(streamcoord.CallbackError) as info:
        list(stream)
    assert info.value.callback == "transform_chunk"
    message = str(info.value)
    assert "must return a Chunk" in message and "None" in message and "str" in message


# =========================================================================== validate_chunk
BAD = ["ok ", "bad1", "fine ", "bad2", "end"]


def digit_validator(chunk):
    if "1" in chunk.content:
        return "contains the digit 1"
    if "2" in chunk.content:
        return False
    return None


def test_validate_none_or_true_accepts_every_chunk(server, client):
    server.enqueue(openai_text(PIECES))
    flip = iter([None, True] * 10)
    stream = client().stream_chat(MESSAGES, model="m", validate_chunk=lambda chunk: next(flip),
                                  track_metrics=True)
    assert "".join(c.content for c in stream) == TEXT
    assert stream.metrics.errors == 0


def test_validate_skip_drops_counts_and_logs_the_rejected_chunk(server, client, caplog):
    caplog.set_level(logging.DEBUG, logger="streamcoord")
    server.enqueue(openai_text(BAD))
    calls = []
    stream = client().stream_chat(MESSAGES, model="m", validate_chunk=digit_validator, on_metrics=calls.append)
    chunks = list(stream)
    assert [c.content for c in chunks if c.content] == ["ok ", "fine ", "end"]
    assert stream.text == "ok fine end"
    assert stream.finish_reason == "stop"
    assert stream.metrics.errors == 2 and calls[-1].errors == 2
    assert stream.metrics.chunks_received == len(chunks) + 2  # received, then rejected
    warnings = [r for r in streamcoord_records(caplog) if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    for record in warnings:
        assert record.stream_id == stream.stream_id
        assert record.provider == "openai"
    assert "contains the digit 1" in warnings[0].getMessage()
    assert "rejected" in warnings[1].getMessage()  # False gives a generic reason


@pytest.mark.parametrize("buffer_chunks", [1, 3])
def test_validate_raise_ends_the_stream_after_the_accepted_chunks(server, client, buffer_chunks):
    server.enqueue(openai_text(BAD))
    stream = client().stream_chat(MESSAGES, model="m", validate_chunk=digit_validator, on_invalid="raise",
                                  buffer_chunks=buffer_chunks, track_metrics=True)
    got = []
    with pytest.raises(streamcoord.ChunkValidationError) as info:
        for chunk in stream:
            got.append(chunk.content)
    assert got == ["ok "]
    assert stream.text == "ok "
    assert info.value.reason == "contains the digit 1"
    assert isinstance(info.value.chunk, Chunk) and info.value.chunk.content == "bad1"
    assert "contains the digit 1" in str(info.value)
    assert stream.metrics.status == "failed" and stream.metrics.errors == 1


def test_a_chunk_rejected_with_on_invalid_raise_counts_as_one_error(server, client):
    server.enqueue(openai_text(BAD))
    calls = []
    stream = client().stream_chat(MESSAGES, model="m", validate_chunk=digit_validator, on_invalid="raise",
                                  on_metrics=calls.append)
    with pytest.raises(streamcoord.ChunkValidationError):
        list(stream)
    assert finals(calls) == ["failed"]
    assert calls[-1].errors == 1


def test_validate_runs_before_transform(server, client):
    server.enqueue(openai_text(PIECES))
    seen = []

    def validator(chunk):
        seen.append(chunk.content)
        return "no 'wor' please" if chunk.content == "wor" else None

    stream = client().stream_chat(MESSAGES, model="m", validate_chunk=validator,
                                  transform_chunk=lambda c: dataclasses.replace(c, content=c.content.upper()))
    chunks = list(stream)
    assert [c.content for c in chunks if c.content] == ["HELLO", ", ", "LD", "!"]
    assert [s for s in seen if s] == PIECES  # the validator saw the untransformed content


def test_validator_that_raises_is_a_callback_error(server, client):
    server.enqueue(openai_text(PIECES))
    boom = KeyError("missing")

    def validator(chunk):
        raise boom

    with pytest.raises(streamcoord.CallbackError) as info:
        list(client().stream_chat(MESSAGES, model="m", validate_chunk=validator))
    assert info.value.callback == "validate_chunk"
    assert info.value.__cause__ is boom


def test_validator_returning_something_else_says_what_to_return(server, client):
    server.enqueue(openai_text(PIECES))
    with pytest.raises(streamcoord.CallbackError, match="None or True") as info:
        list(client().stream_chat(MESSAGES, model="m", validate_chunk=lambda chunk: 42))
    assert info.value.callback == "validate_chunk"
    assert "42" in str(info.value)


@pytest.mark.parametrize("options, exc, words", [
    ({"on_invalid": "ignore"}, ValueError, ["on_invalid", "skip", "raise", "ignore"]),
    ({"on_invalid": None}, ValueError, ["on_invalid", "skip", "raise"]),
    ({"validate_chunk": "not a function"}, TypeError, ["validate_chunk", "function"]),
    ({"transform_chunk": 3}, TypeError, ["transform_chunk", "function"]),
    ({"on_metrics": "print"}, TypeError, ["on_metrics", "function"]),
    ({"on_error": object()}, TypeError, ["on_error", "function"]),
], ids=["on_invalid-ignore", "on_invalid-None", "validate-str", "transform-int", "on_metrics-str", "on_error-object"])
def test_invalid_callback_options_are_rejected_up_front(options, exc, words):
    with pytest.raises(exc) as info:
        offline_client().stream_chat(MESSAGES, model="m", **options)
    for word in words:
        assert word in str(info.value)


# =========================================================================== buffer_chunks
def test_batches_have_exactly_n_chunks_except_the_last(server, client):
    server.enqueue(openai_text(SEVEN, usage=True), openai_text(SEVEN, usage=True))
    unbuffered = [(c.content, c.index) for c in client().stream_chat(MESSAGES, model="m")]
    assert len(unbuffered) % 4 != 0  # so there is a remainder
    stream = client().stream_chat(MESSAGES, model="m", buffer_chunks=4)
    batches = list(stream.batches())
    sizes = [len(b) for b in batches]
    assert sizes == [4] * (len(unbuffered) // 4) + [len(unbuffered) % 4]
    assert [(c.content, c.index) for b in batches for c in b] == unbuffered
    assert stream.text == "abcdefg" and stream.usage == {"prompt_tokens": 10, "completion_tokens": 7,
                                                         "total_tokens": 17}


def test_iterating_a_buffered_stream_yields_the_chunks_one_by_one(server, client):
    server.enqueue(openai_text(SEVEN), openai_text(SEVEN))
    unbuffered = [(c.content, c.index) for c in client().stream_chat(MESSAGES, model="m")]
    stream = client().stream_chat(MESSAGES, model="m", buffer_chunks=3)
    chunks = list(stream)
    assert all(isinstance(c, Chunk) for c in chunks)
    assert [(c.content, c.index) for c in chunks] == unbuffered


def test_next_and_batches_can_be_mixed_on_a_buffered_stream(server, client):
    server.enqueue(openai_text(SEVEN))
    stream = client().stream_chat(MESSAGES, model="m", buffer_chunks=3)
    assert next(stream).content == "a"
    batches = list(stream.batches())
    assert [len(b) for b in batches] == [2, 3, 2]  # the rest of the first group, then the others
    assert "".join(c.content for b in batches for c in b) == "bcdefg"


def one_read(response):
    """The same answer as one HTTP chunk, so the client parses it in one read."""
    return Response(parts=(body_bytes(response),))


TWENTY = [f"w{i} " for i in range(20)]


def read_batches(stream, how):
    """The chunks of a buffered stream grouped as each way of reading hands them over."""
    if how == "batches":
        return [[c.content for c in b] for b in stream.batches()]
    if how == "poll":
        out = []
        while True:
            batch = stream.poll(5)
            if batch is None:
                return out
            out.append([c.content for c in batch])
    return [[c.content for c in stream]]


@pytest.mark.parametrize("how", ["batches", "poll", "iter"])
def test_a_read_that_fills_several_groups_hands_each_over_in_order(server, client, how):
    server.enqueue(one_read(openai_text(TWENTY)))
    stream = client().stream_chat(MESSAGES, model="m", buffer_chunks=3)
    got = read_batches(stream, how)
    flat = [text for batch in got for text in batch]
    assert flat == TWENTY + [""]  # and the finish chunk
    if how != "iter":
        assert [len(b) for b in got] == [3] * 7
    assert stream.text == "".join(TWENTY) and stream.finish_reason == "stop"


def test_breaking_off_inside_a_read_of_several_groups_closes_the_stream(server, client, no_thread_leak):
    server.enqueue(one_read(openai_text(TWENTY)))
    stream = client().stream_chat(MESSAGES, model="m", buffer_chunks=3)
    for batch in stream.batches():
        first = [c.content for c in batch]
        break
    assert first == TWENTY[:3]
    assert stream.closed
    with pytest.raises(ValueError, match="closed"):
        next(stream)


def test_start_stream_gets_every_group_of_a_read_in_order(server, no_thread_leak):
    server.enqueue(one_read(sse([{"t": t, "i": i} for i, t in enumerate(TWENTY)], done=True)))
    got = []
    handle = StreamingCoordinator.start_stream(
        server.base_url + "/custom", {}, {}, got.append, parse_chunk_fn=parse_custom, buffer_chunks=3)
    assert handle.join(5) and handle.error is None
    assert [c.content for c in got] == TWENTY


def test_validate_and_transform_in_one_read_keep_every_rule(server, client):
    # One read: the validator rejects one chunk, the transform skips the finish chunk and
    # shouts the rest; the skipped chunk's finish reason and usage are still the answer's.
    server.enqueue(one_read(openai_text(TWENTY, usage=True)))
    seen = []

    def validator(chunk):
        seen.append(chunk.content)
        return "no w5" if chunk.content == "w5 " else None

    def shout(chunk):
        return None if not chunk.content else dataclasses.replace(chunk, content=chunk.content.upper())

    stream = client().stream_chat(MESSAGES, model="m", validate_chunk=validator, transform_chunk=shout,
                                  buffer_chunks=4)
    chunks = list(stream)
    kept = [t for t in TWENTY if t != "w5 "]
    assert [c.content for c in chunks] == [t.upper() for t in kept]
    assert [s for s in seen if s] == TWENTY  # the validator saw the untransformed content
    assert stream.text == "".join(kept).upper()
    assert stream.finish_reason == "stop" and stream.usage["completion_tokens"] == 20
    assert stream.model == "gpt-4o-mini"
    assert stream.metrics.errors == 1


@pytest.mark.parametrize("failing", ["validate_chunk", "transform_chunk"])
@pytest.mark.parametrize("changes_from", [0, 3])
def test_a_callback_failing_after_a_changed_chunk_hands_over_the_chunks_before_it(server, client, failing,
                                                                                  changes_from):
    # One read; the transform changes the chunks from w{changes_from} on, then one of the
    # two callbacks raises on w7: the seven chunks before it reach the consumer, then the error.
    server.enqueue(one_read(openai_text(TWENTY)))
    changed = TWENTY[changes_from:]

    def validator(chunk):
        if failing == "validate_chunk" and chunk.content == "w7 ":
            raise RuntimeError("no w7")

    def transform(chunk):
        if failing == "transform_chunk" and chunk.content == "w7 ":
            raise RuntimeError("no w7")
        return dataclasses.replace(chunk, content=chunk.content.upper()) if chunk.content in changed else chunk

    stream = client().stream_chat(MESSAGES, model="m", validate_chunk=validator, transform_chunk=transform)
    got = []
    with pytest.raises(streamcoord.CallbackError) as info:
        for chunk in stream:
            got.append(chunk.content)
    assert info.value.callback == failing
    assert got == TWENTY[:changes_from] + [t.upper() for t in TWENTY[changes_from:7]]
    assert stream.text == "".join(got)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_remainder_is_flushed_at_the_end_for_every_provider(server, client, provider):
    server.enqueue(BUILDERS[provider](SEVEN), BUILDERS[provider](SEVEN))
    expected = [c.content for c in client(provider).stream_chat(MESSAGES, model=MODELS[provider])]
    stream = client(provider).stream_chat(MESSAGES, model=MODELS[provider], buffer_chunks=3)
    batches = list(stream.batches())
    sizes = [len(b) for b in batches]
    assert len(expected) % 3 != 0
    assert sizes == [3] * (len(expected) // 3) + [len(expected) % 3]
    assert [c.content for b in batches for c in b] == expected
    assert stream.text == "abcdefg"
    assert stream.finish_reason == "stop"
    assert batches[-1][-1].finish_reason == "stop"  # the finish chunk was in the remainder


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_remainder_is_flushed_before_a_dropped_connection_is_raised(server, client, provider):
    server.enqueue(BUILDERS[provider](SEVEN, drop_after=7))
    stream = client(provider).stream_chat(MESSAGES, model=MODELS[provider], buffer_chunks=5)
    got = []
    with pytest.raises(streamcoord.ConnectionLost):
        for chunk in stream:
            got.append(chunk.content)
    assert got == SEVEN
    assert stream.text == "abcdefg"


def test_batches_deliver_the_remainder_before_the_error(server, client):
    server.enqueue(openai_text(SEVEN, drop_after=7))
    stream = client().stream_chat(MESSAGES, model="m", buffer_chunks=5)
    batches = []
    with pytest.raises(streamcoord.ConnectionLost):
        for batch in stream.batches():
            batches.append([c.content for c in batch])
    assert batches == [SEVEN[:5], SEVEN[5:]]


def test_the_remainder_is_flushed_before_an_error_event(server, client):
    err = {"error": {"message": "The server is overloaded", "type": "server_error"}}
    server.enqueue(sse([openai_event("a"), openai_event("b"), err]))
    stream = client(max_retries=0).stream_chat(MESSAGES, model="m", buffer_chunks=5)
    got = []
    with pytest.raises(streamcoord.ServerError):
        for chunk in stream:
            got.append(chunk.content)
    assert got == ["a", "b"]


def test_the_remainder_is_flushed_before_an_idle_timeout(server, client):
    server.enqueue(openai_text(SEVEN, stall_after=2))
    stream = client().stream_chat(MESSAGES, model="m", buffer_chunks=5, timeout=0.2)
    got = []
    with pytest.raises(streamcoord.StreamTimeout):
        for chunk in stream:
            got.append(chunk.content)
    assert got == ["a", "b"]


def test_the_remainder_is_flushed_before_a_transform_error(server, client):
    server.enqueue(openai_text(SEVEN))

    def fails_on_d(chunk):
        if chunk.content == "d":
            raise RuntimeError("no d")
        return chunk

    stream = client().stream_chat(MESSAGES, model="m", buffer_chunks=5, transform_chunk=fails_on_d)
    got = []
    with pytest.raises(streamcoord.CallbackError):
        for chunk in stream:
            got.append(chunk.content)
    assert got == ["a", "b", "c"]


class FlakyParser(EventParser):
    """A custom adapter's parser with a bug: it raises a plain ValueError on one event."""

    def parse(self, event):
        if event.data == "bad":
            raise ValueError("adapter bug")
        if event.data == "end":
            self.done = True
            return Chunk("", "stop", index=self.next_index)
        index = self.next_index
        self.next_index += 1
        return Chunk(event.data.upper(), index=index)


class FlakyAdapter(Adapter):
    name = "flaky"
    requires_api_key = False

    def build_request(self, messages, options, *, base_url, api_key):
        return HTTPRequest(url=f"{base_url}/flaky", json={"messages": messages}, headers={})

    def new_parser(self, request):
        return FlakyParser()


def test_chunks_parsed_before_a_custom_parser_error_are_still_delivered(server, no_thread_leak):
    server.enqueue(Response(parts=(b"data: a\n\ndata: b\n\ndata: bad\n\ndata: end\n\n",)))  # one read
    stream = streamcoord.Client(FlakyAdapter(), base_url=server.base_url, max_retries=0).stream_chat(MESSAGES)
    got = []
    with pytest.raises(streamcoord.ProtocolError, match="ValueError: adapter bug") as info:
        for chunk in stream:
            got.append(chunk.content)
    assert isinstance(info.value.__cause__, ValueError)
    assert got == ["A", "B"]


@pytest.mark.parametrize("value", [0, -1, 2.5, True, False, "5"])
def test_invalid_buffer_chunks_is_a_value_error(value):
    with pytest.raises(ValueError, match="buffer_chunks") as info:
        offline_client().stream_chat(MESSAGES, model="m", buffer_chunks=value)
    assert ">= 1" in str(info.value)


# =========================================================================== on_error
# In-stream error events are covered per provider in test_providers.py and the OpenAI 401
# in test_stream_core.py; here: a non-2xx answer with each provider's real error body.
HTTP_ERRORS = {
    "openai": (400, {"error": {"message": "Invalid value for 'temperature'", "type": "invalid_request_error",
                               "param": "temperature", "code": "invalid_value"}}, streamcoord.APIError),
    "anthropic": (401, {"type": "error", "error": {"type": "authentication_error",
                                                   "message": "invalid x-api-key"}},
                  streamcoord.AuthenticationError),
    "gemini": (400, {"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
                               "status": "INVALID_ARGUMENT"}}, streamcoord.APIError),
    "ollama": (404, {"error": "model \"llama3\" not found, try pulling it first"}, streamcoord.APIError),
    "mistral": (422, {"object": "error", "message": "Invalid model: nope", "type": "invalid_model",
                      "param": None, "code": "1500"}, streamcoord.APIError),
}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_on_error_gets_the_status_and_decoded_body_of_a_non_2xx_answer(server, client, provider, sleeps):
    status, body, cls = HTTP_ERRORS[provider]
    server.enqueue(error(status, body))
    seen = []
    stream = client(provider).stream_chat(MESSAGES, model=MODELS[provider],
                                          on_error=lambda s, b: seen.append((s, b)))
    with pytest.raises(cls) as info:
        list(stream)
    assert seen == [(status, body)]
    assert info.value.status == status and info.value.body == body and info.value.provider == provider
    assert len(server.requests) == 1 and sleeps == []


def test_on_error_is_called_for_every_retried_answer(server, client, sleeps):
    bodies = [{"error": {"message": f"busy {i}", "type": "server_error"}} for i in range(2)]
    server.enqueue(error(503, bodies[0]), error(429, bodies[1]), openai_text(PIECES))
    seen = []
    stream = client().stream_chat(MESSAGES, model="m", on_error=lambda s, b: seen.append((s, b)))
    assert "".join(c.content for c in stream) == TEXT  # the retry succeeded: no exception
    assert seen == [(503, bodies[0]), (429, bodies[1])]


def test_on_error_that_raises_is_logged_and_the_real_error_is_raised(server, client, caplog):
    caplog.set_level(logging.DEBUG, logger="streamcoord")
    server.enqueue(error(400, {"error": {"message": "bad model"}}))

    def broken(status, body):
        raise RuntimeError("alerting is down")

    with pytest.raises(streamcoord.APIError, match="bad model"):
        list(client().stream_chat(MESSAGES, model="m", on_error=broken))
    logged = [r for r in streamcoord_records(caplog) if r.levelno >= logging.ERROR]
    assert len(logged) == 1 and "on_error" in logged[0].getMessage()
    assert isinstance(logged[0].exc_info[1], RuntimeError)


# =========================================================================== logging
def test_debug_log_shows_the_lifecycle_with_stream_id_and_provider(server, client, caplog):
    caplog.set_level(logging.DEBUG, logger="streamcoord")
    server.enqueue(openai_text(PIECES))
    stream = client().stream_chat(MESSAGES, model="m", stream_id="log-42")
    list(stream)
    records = streamcoord_records(caplog)
    assert records
    for record in records:
        assert record.stream_id == "log-42"
        assert record.provider == "openai"
    messages = [r.getMessage() for r in records]

    def position(prefix):
        found = [i for i, m in enumerate(messages) if m.startswith(prefix)]
        assert found, f"no log line starting with {prefix!r} in {messages}"
        return found[0]

    order = [position("request POST"), position("response HTTP 200"), position("first chunk"),
             position("stream completed")]
    assert order == sorted(order)
    assert "/v1/chat/completions" in messages[order[0]]
    assert messages[-1].startswith("stream completed")
    assert "chunks" in messages[-1] and "bytes" in messages[-1]


def test_retry_is_logged_with_stream_id(server, client, caplog, sleeps):
    caplog.set_level(logging.DEBUG, logger="streamcoord")
    server.enqueue(error(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "0"}), openai_text(PIECES))
    stream = client().stream_chat(MESSAGES, model="m", stream_id="log-retry")
    list(stream)
    retries = [r for r in streamcoord_records(caplog) if "retrying" in r.getMessage()]
    assert len(retries) == 1 and retries[0].stream_id == "log-retry" and retries[0].provider == "openai"


def all_log_text(record):
    parts = [record.getMessage(), repr(record.msg), repr(record.args)]
    if record.exc_info:
        parts.append(logging.Formatter().formatException(record.exc_info))
    return "\n".join(parts)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_api_key_never_appears_in_any_log_record(server, client, caplog, provider):
    key = "sk-DISTINCTIVE-k3y-do-not-log-7f3a"
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="streamcoord")
    server.enqueue(error(401, {"error": {"message": "invalid key"}}))
    server.enqueue(error(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "0"}))
    server.enqueue(BUILDERS[provider](PIECES))
    c = client(provider, api_key=key)
    with pytest.raises(streamcoord.AuthenticationError):
        list(c.stream_chat(MESSAGES, model=MODELS[provider], on_error=lambda s, b: None))
    stream = c.stream_chat(MESSAGES, model=MODELS[provider], track_metrics=True, on_metrics=lambda m: None)
    assert stream.text == "" and "".join(ch.content for ch in stream) == TEXT
    if provider != "ollama":  # the key really was sent, so it could have leaked
        assert any(key in v for v in server.requests[-1].headers.values())
    assert streamcoord_records(caplog)
    for record in caplog.records:
        assert key not in all_log_text(record), record


def test_enable_logging_writes_lines_with_stream_id_and_provider(server, client):
    out = io.StringIO()
    log = logging.getLogger("streamcoord")
    level = log.level
    handler = streamcoord.enable_logging(stream=out)
    try:
        assert handler in log.handlers
        server.enqueue(openai_text(PIECES))
        list(client().stream_chat(MESSAGES, model="m", stream_id="enable-7"))
        log.info("a line without stream fields")  # must not break the format
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    lines = out.getvalue().splitlines()
    stream_lines = [line for line in lines if "[enable-7 openai]" in line]
    assert any("request POST" in line for line in stream_lines)
    assert any("stream completed" in line for line in stream_lines)
    assert any("[- -] a line without stream fields" in line for line in lines)
    assert all(" DEBUG " in line or " INFO " in line for line in lines)
    assert handler not in log.handlers


# =========================================================================== direct API
def parse_custom(data):
    obj = json.loads(data)
    if obj.get("skip"):
        return None
    return Chunk(content=obj["t"], index=obj["i"], finish_reason=obj.get("f"))


CUSTOM_EVENTS = [{"t": "one ", "i": 0}, {"skip": True}, {"t": "two ", "i": 1}, {"t": "three", "i": 2, "f": "stop"}]


def custom_sse(**kw):
    return sse(CUSTOM_EVENTS, done=True, **kw)


def test_start_stream_delivers_chunks_to_the_callback_in_order(server, no_thread_leak):
    server.enqueue(custom_sse())
    got = []
    seen_data = []

    def parse(data):
        seen_data.append(data)
        return parse_custom(data)

    handle = StreamingCoordinator.start_stream(
        server.base_url + "/custom", {"prompt": "hi"}, {"X-Custom": "yes"}, got.append,
        parse_chunk_fn=parse, provider="myprov")
    assert handle.join(5) is True
    assert handle.done and handle.error is None
    assert [(c.content, c.index) for c in got] == [("one ", 0), ("two ", 1), ("three", 2)]
    assert handle.text == "one two three"
    assert "[DONE]" not in seen_data and len(seen_data) == 4  # [DONE] never reaches the parser
    request = server.requests[0]
    assert request.path == "/custom" and request.json == {"prompt": "hi"}
    assert request.headers["x-custom"] == "yes"
    assert handle.metrics.status == "completed" and handle.metrics.provider == "myprov"


def test_start_stream_error_is_on_the_handle(server, no_thread_leak):
    body = {"error": {"message": "no such route"}}
    server.enqueue(error(404, body))
    got, reported = [], []
    handle = StreamingCoordinator.start_stream(
        server.base_url + "/custom", {}, {}, got.append, parse_chunk_fn=parse_custom,
        on_error=lambda s, b: reported.append((s, b)), max_retries=0)
    assert handle.join(5) is True
    assert isinstance(handle.error, streamcoord.APIError)
    assert handle.error.status == 404 and handle.error.body == body
    assert reported == [(404, body)] and got == []
    assert handle.metrics.status == "failed"


def test_start_stream_drop_mid_body_keeps_what_arrived_and_sets_the_error(server, no_thread_leak):
    parts = custom_sse().parts
    server.enqueue(Response(parts=parts[:2] + (Drop(),)))
    got = []
    handle = StreamingCoordinator.start_stream(
        server.base_url + "/custom", {}, {}, got.append, parse_chunk_fn=parse_custom, max_retries=0)
    assert handle.join(5) is True
    assert [c.content for c in got] == ["one "]
    assert isinstance(handle.error, streamcoord.ConnectionLost)


def test_cancel_stops_a_stalled_stream_and_closes_the_connection(server, no_thread_leak):
    parts = custom_sse().parts
    server.enqueue(Response(parts=parts[:1] + (Stall(timeout=30),) + parts[1:]))
    first = threading.Event()
    got = []

    def callback(chunk):
        got.append(chunk)
        first.set()

    handle = StreamingCoordinator.start_stream(
        server.base_url + "/custom", {}, {}, callback, parse_chunk_fn=parse_custom, timeout=60)
    assert first.wait(5) and server.stalled.wait(5)
    assert handle.join(0.01) is False  # still running: stalled
    started = time.monotonic()
    handle.cancel()
    assert time.monotonic() - started < 2.0
    assert handle.done
    assert server.connection_closed.wait(2)
    assert handle.error is None
    assert handle.metrics.status == "cancelled"
    assert [c.content for c in got] == ["one "]


def test_parse_chunk_fn_that_raises_is_a_callback_error_after_the_chunks_before_it(server, no_thread_leak):
    server.enqueue(Response(parts=(b'data: {"t": "one ", "i": 0}\n\ndata: {"t": "two", "i": 1}\n\n'
                                   b'data: {not json\n\ndata: {"t": "three", "i": 2}\n\n',)))  # one read
    got = []
    handle = StreamingCoordinator.start_stream(
        server.base_url + "/custom", {}, {}, got.append, parse_chunk_fn=parse_custom, max_retries=0)
    assert handle.join(5)
    assert [c.content for c in got] == ["one ", "two"]
    assert isinstance(handle.error, streamcoord.CallbackError)
    assert handle.error.callback == "parse_chunk_fn"
    assert isinstance(handle.error.__cause__, json.JSONDecodeError)


def test_parse_chunk_fn_returning_a_non_chunk_says_what_to_return(server, no_thread_leak):
    server.enqueue(custom_sse())
    handle = StreamingCoordinator.start_stream(
        server.base_url + "/custom", {}, {}, lambda c: None, parse_chunk_fn=json.loads, max_retries=0)
    assert handle.join(5)
    assert isinstance(handle.error, streamcoord.CallbackError)
    assert handle.error.callback == "parse_chunk_fn"
    assert "Chunk or None" in str(handle.error) and "dict" in str(handle.error)


def test_callback_that_raises_ends_the_stream_with_callback_error(server, no_thread_leak):
    server.enqueue(custom_sse())
    boom = RuntimeError("consumer broke")
    got = []

    def callback(chunk):
        got.append(chunk.content)
        if len(got) == 2:
            raise boom

    handle = StreamingCoordinator.start_stream(
        server.base_url + "/custom", {}, {}, callback, parse_chunk_fn=parse_custom, track_metrics=True)
    assert handle.join(5)
    assert got == ["one ", "two "]  # nothing after the failing call
    assert isinstance(handle.error, streamcoord.CallbackError)
    assert handle.error.callback == "callback" and handle.error.__cause__ is boom
    assert handle.metrics.status == "failed"
    assert len(server.requests) == 1  # not retried


@pytest.mark.parametrize("missing", ["url", "request", "callback", "parse_chunk"])
def test_simple_stream_names_the_missing_argument(missing):
    kwargs = {"url": "http://127.0.0.1:9/custom", "request": {}, "headers": {}, "callback": print,
              "parse_chunk": parse_custom}
    del kwargs[missing]
    with pytest.raises(TypeError, match=missing) as info:
        StreamingCoordinator.simple_stream(**kwargs)
    others = {"url", "request", "callback", "parse_chunk"} - {missing}
    assert not any(f" {name}" in str(info.value) for name in others)  # only the missing one is named


def test_simple_stream_with_metrics_options(server, no_thread_leak):
    response = custom_sse()
    server.enqueue(response)
    got, calls = [], []
    handle = StreamingCoordinator.simple_stream(
        url=server.base_url + "/custom", request={"q": 1}, headers={}, callback=got.append,
        parse_chunk=parse_custom, options={"track_metrics": True, "on_metrics": calls.append, "provider": "mine"})
    assert handle.join(5)
    assert "".join(c.content for c in got) == "one two three"
    assert finals(calls) == ["completed"]
    assert calls[-1].chunks_received == 3
    assert calls[-1].bytes_received == len(body_bytes(response))
    assert calls[-1].provider == "mine"
    assert handle.metrics == calls[-1]


def test_simple_stream_on_metrics_without_track_metrics_turns_tracking_on(server, no_thread_leak):
    server.enqueue(custom_sse())
    calls = []
    handle = StreamingCoordinator.simple_stream(
        url=server.base_url + "/custom", request={}, callback=lambda c: None, parse_chunk=parse_custom,
        options={"on_metrics": calls.append})
    assert handle.join(5)
    assert finals(calls) == ["completed"]


def test_start_stream_runs_validate_transform_and_buffer(server, no_thread_leak):
    server.enqueue(custom_sse())
    got = []
    handle = StreamingCoordinator.start_stream(
        server.base_url + "/custom", {}, {}, got.append, parse_chunk_fn=parse_custom,
        validate_chunk=lambda c: "no two" if c.content.startswith("two") else None,
        transform_chunk=lambda c: dataclasses.replace(c, content=c.content.upper()),
        buffer_chunks=5, track_metrics=True)
    assert handle.join(5) and handle.error is None
    assert [c.content for c in got] == ["ONE ", "THREE"]
    assert handle.metrics.errors == 1


def test_start_stream_reads_ndjson_lines(server, no_thread_leak):
    lines = [json.dumps(e).encode() + b"\n" for e in CUSTOM_EVENTS]
    response = Response(parts=(lines[0] + lines[1][:5], lines[1][5:], *lines[2:]), content_type="application/x-ndjson")
    server.enqueue(response)
    seen, got = [], []

    def parse(data):
        seen.append(data)
        return parse_custom(data)

    handle = StreamingCoordinator.start_stream(
        server.base_url + "/api/chat", {}, {}, got.append, parse_chunk_fn=parse, wire_format="ndjson",
        track_metrics=True)
    assert handle.join(5) and handle.error is None
    assert seen == [json.dumps(e) for e in CUSTOM_EVENTS]  # one line each, without its newline
    assert "".join(c.content for c in got) == "one two three"
    assert handle.metrics.bytes_received == len(body_bytes(response))


def test_start_stream_rejects_a_bad_wire_format():
    with pytest.raises(ValueError, match="ndjson"):
        StreamingCoordinator.start_stream("http://127.0.0.1:9/custom", {}, {}, print, parse_chunk_fn=parse_custom,
                                          wire_format="jsonl")


def parse_openai_text(data):
    choices = json.loads(data).get("choices") or []
    if not choices:
        return None
    return Chunk(content=choices[0]["delta"].get("content") or "", finish_reason=choices[0].get("finish_reason"))


def test_start_stream_with_buffer_chunks_gives_the_callback_nothing_after_it_raised(server, no_thread_leak):
    # One read of twenty words and a finish, groups of three: the callback raises on the
    # sixth chunk (w4); neither the rest of its group nor the buffered rest of the read
    # (the finish chunk above all, which would look like a normal end) reaches it after.
    server.enqueue(one_read(openai_text(TWENTY)))
    got = []

    def callback(chunk):
        got.append(chunk.content)
        if chunk.content == "w4 ":
            raise RuntimeError("consumer broke")

    handle = StreamingCoordinator.start_stream(
        server.base_url + "/v1/chat/completions", {}, {}, callback, parse_chunk_fn=parse_openai_text, buffer_chunks=3)
    assert handle.join(5)
    assert isinstance(handle.error, streamcoord.CallbackError) and handle.error.callback == "callback"
    assert got == ["", "w0 ", "w1 ", "w2 ", "w3 ", "w4 "]


@pytest.mark.parametrize("recovery", [False, True])
def test_a_failing_transform_leaves_the_validator_seeing_the_whole_read_with_recovery_on_or_off(
        server, client, recovery, tmp_path):
    # The validator sees each chunk of a read before the transform sees any (DESIGN's order:
    # validate, persist, transform): a transform raising on w2 leaves the later rejections of
    # w10 and w11 counted, with recovery on (where the store is written in between) and off.
    server.enqueue(one_read(openai_text(TWENTY)))
    calls = []

    def validator(chunk):
        calls.append("v")
        return "bad" if chunk.content in ("w10 ", "w11 ") else None

    def transform(chunk):
        calls.append("t")
        if chunk.content == "w2 ":
            raise RuntimeError("boom")
        return chunk

    store = MemoryStore() if recovery else None
    stream = client(recovery_store=store).stream_chat(
        MESSAGES, model="m", validate_chunk=validator, transform_chunk=transform, stream_recovery=recovery)
    with pytest.raises(streamcoord.CallbackError) as failed:
        list(stream)
    assert failed.value.callback == "transform_chunk"
    assert stream.text == "w0 w1 "
    assert stream.metrics.errors == 3  # the two rejections and the stream's error
    assert calls.count("v") == stream.metrics.chunks_received  # every chunk of the read


def test_a_transform_skipping_another_choices_finish_leaves_choice_0s(server, client):
    # n=2: choice 1 ends with "length" after choice 0's "stop"; the common "skip empty
    # chunks" transform drops both finish chunks, and stream.finish_reason stays choice 0's.
    server.enqueue(one_read(sse([
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}}, {"index": 1, "delta": {"content": "Yo"}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {"choices": [{"index": 1, "delta": {}, "finish_reason": "length"}]},
    ], done=True)))
    stream = client().stream_chat(MESSAGES, model="m", n=2, transform_chunk=lambda c: c if c.content else None)
    chunks = list(stream)
    assert [c.content for c in chunks] == ["Hi", "Yo"]
    assert stream.text == "Hi" and stream.finish_reason == "stop"


def test_a_transform_that_is_not_idempotent_changes_each_chunk_once(server, client):
    # The transform runs once per chunk: the first chunk it changes (where the one-pass
    # shaping leaves its fast path) is not transformed a second time.
    server.enqueue(one_read(openai_text(TWENTY)))
    seen = []

    def exclaim(chunk):
        seen.append(chunk.content)
        return dataclasses.replace(chunk, content=chunk.content + "!") if chunk.content == "w3 " else chunk

    stream = client().stream_chat(MESSAGES, model="m", transform_chunk=exclaim, validate_chunk=lambda c: True)
    chunks = list(stream)
    assert [c.content for c in chunks if c.content] == [t + "!" if t == "w3 " else t for t in TWENTY]
    assert seen.count("w3 ") == 1 and stream.text == "".join(TWENTY).replace("w3 ", "w3 !")
    assert stream.finish_reason == "stop" and stream.model == "gpt-4o-mini"
