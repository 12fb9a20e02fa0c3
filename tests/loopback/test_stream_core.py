"""The streaming core over real loopback HTTP: full streams, closing, timeouts, retries."""

from __future__ import annotations

import email.utils
import gc
import json
import logging
import threading
import time

import pytest

import streamcoord
from tests.conftest import API_KEY, MESSAGES, streamcoord_threads
from tests.support.fakeserver import Drop, Stall, error, openai_text, sse

PIECES = ["Hello", ", ", "wor", "ld", "!"]


def worker_thread(stream):
    return next(t for t in streamcoord_threads() if t.name == f"streamcoord-{stream.stream_id}")


def test_full_stream_yields_every_piece_in_order(server, client):
    server.enqueue(openai_text(PIECES, usage=True))
    stream = client().stream_chat(MESSAGES, model="gpt-4o-mini")
    chunks = list(stream)
    assert "".join(c.content for c in chunks) == "Hello, world!"
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert stream.text == "Hello, world!"
    assert stream.finish_reason == "stop"
    assert stream.usage == {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    assert stream.model == "gpt-4o-mini"
    assert stream.metrics.status == "completed"


def test_request_carries_auth_model_and_stream_flag(server, client):
    server.enqueue(openai_text(["ok"]))
    list(client().stream_chat(MESSAGES, model="gpt-4o-mini", temperature=0.2, max_tokens=50))
    request = server.requests[0]
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.json["stream"] is True
    assert request.json["stream_options"] == {"include_usage": True}
    assert request.json["messages"] == MESSAGES
    assert request.json["temperature"] == 0.2
    assert request.json["max_completion_tokens"] == 50


def test_stream_is_lazy_and_stream_id_known_before_iteration(server, client):
    server.enqueue(openai_text(PIECES))
    stream = client().stream_chat(MESSAGES, model="m", stream_id="req-42")
    assert stream.stream_id == "req-42"
    assert server.requests == []  # nothing sent before iteration
    assert stream.metrics is None  # not started
    with stream:
        assert server.wait_for_requests(1)
        # Started on entering the block; what has arrived so far is a beginning of the answer.
        assert stream.metrics is not None
        assert "Hello, world!".startswith(stream.text)
        assert "".join(c.content for c in stream) == "Hello, world!"


def test_early_break_closes_connection(server, client):
    server.enqueue(openai_text(PIECES, stall_after=2))
    stream = client().stream_chat(MESSAGES, model="m")
    for chunk in stream:  # noqa: B007 - the loop is the point: break out of it
        thread = worker_thread(stream)
        break
    assert chunk.content == "Hello"
    # No close(): leaving the loop is what stops the stream, though `stream` is still referenced.
    assert server.connection_closed.wait(1), "the upstream connection stayed open"
    thread.join(1)
    assert not thread.is_alive()
    assert stream.metrics.status == "cancelled"


def test_close_while_server_stalls_returns_promptly(server, client):
    server.enqueue(openai_text(PIECES, stall_after=1))
    stream = client().stream_chat(MESSAGES, model="m", timeout=60)
    it = iter(stream)
    assert next(it).content == "Hello"
    assert server.stalled.wait(2)
    thread = worker_thread(stream)
    started = time.monotonic()
    stream.close()
    assert time.monotonic() - started < 2.0
    assert not thread.is_alive()
    assert server.connection_closed.wait(2)


def test_garbage_collected_stream_stops_its_worker(server, client):
    server.enqueue(openai_text(PIECES, stall_after=1))
    stream = client().stream_chat(MESSAGES, model="m", timeout=60)
    assert next(stream).content == "Hello"
    thread = worker_thread(stream)
    del stream
    gc.collect()
    thread.join(2)
    assert not thread.is_alive()
    assert server.connection_closed.wait(2)


def test_thread_count_back_to_baseline_after_many_closed_streams(server, client):
    before = set(threading.enumerate())
    server.default = openai_text(PIECES, stall_after=1)
    for _ in range(20):
        with client().stream_chat(MESSAGES, model="m") as stream:
            next(stream)
    assert len(streamcoord_threads()) == 0
    # Every thread is one that was there before or a server handler (each ends when it
    # sees its client gone, which a loaded machine may schedule after this line).
    assert [t.name for t in threading.enumerate() if t not in before and not server.serves_on(t)] == []


def test_iterating_a_closed_stream_says_what_to_do(server, client):
    server.enqueue(openai_text(PIECES, stall_after=1))
    stream = client().stream_chat(MESSAGES, model="m")
    next(stream)
    stream.close()
    stream.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        next(stream)


def test_idle_timeout_raises_stream_timeout(server, client):
    server.enqueue(openai_text(PIECES, stall_after=2))
    stream = client().stream_chat(MESSAGES, model="m", timeout=0.2)
    got = []
    with pytest.raises(streamcoord.StreamTimeout, match="idle"):
        for chunk in stream:
            got.append(chunk.content)
    assert got == ["Hello", ", "]  # what arrived before the stall was delivered
    assert stream.metrics.status == "failed"


def test_pings_and_comments_do_not_reset_the_idle_timeout(server, client):
    pings = []
    for _ in range(12):  # 0.6 s of keep-alives, three times the idle timeout
        pings += [Stall(timeout=0.05), b": keep-alive\n\n"]
    body = openai_text(["Hi"]).parts
    server.enqueue(streamcoord_response(body[:2] + tuple(pings) + body[2:]))
    with pytest.raises(streamcoord.StreamTimeout):
        list(client().stream_chat(MESSAGES, model="m", timeout=0.2))


def streamcoord_response(parts):
    from tests.support.fakeserver import Response

    return Response(parts=parts)


def test_total_deadline_bounds_a_trickling_stream(server, client):
    parts = [b'data: {"choices":[{"index":0,"delta":{"content":"x"}}]}\n\n', Stall(timeout=0.05)] * 40
    server.enqueue(streamcoord_response(tuple(parts)))
    timeout = streamcoord.Timeout(idle=5.0, total=0.3)
    with pytest.raises(streamcoord.StreamTimeout, match="deadline"):
        list(client().stream_chat(MESSAGES, model="m", timeout=timeout))


def test_401_is_not_retried_and_on_error_sees_the_body(server, client, sleeps):
    body = {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}}
    server.enqueue(error(401, body))
    seen = []
    with pytest.raises(streamcoord.AuthenticationError) as info:
        list(client().stream_chat(MESSAGES, model="m", on_error=lambda status, b: seen.append((status, b))))
    assert seen == [(401, body)]
    assert info.value.status == 401 and info.value.body == body and info.value.provider == "openai"
    assert len(server.requests) == 1 and sleeps == []


def test_429_retry_after_is_honoured(server, client, sleeps):
    server.enqueue(error(429, {"error": {"message": "slow down", "type": "rate_limit_error"}}, headers={"Retry-After": "3"}))
    server.enqueue(openai_text(PIECES))
    stream = client().stream_chat(MESSAGES, model="m")
    assert "".join(c.content for c in stream) == "Hello, world!"
    assert sleeps == [3.0]
    assert stream.metrics.retries == 1
    assert len(server.requests) == 2


def test_retry_after_ms_and_http_date_are_honoured(server, client, sleeps):
    later = email.utils.format_datetime(email.utils.localtime().replace(microsecond=0)).replace("+0000", "GMT")
    server.enqueue(error(503, "busy", headers={"retry-after-ms": "1500"}))
    server.enqueue(error(529, {"type": "error", "error": {"type": "overloaded_error"}}, headers={"Retry-After": later}))
    server.enqueue(openai_text(["ok"]))
    assert streamcoord.Client  # noqa: B018 - keep the import used
    stream = client(max_retries=streamcoord.Retry(3, sleep=sleeps.append)).stream_chat(MESSAGES, model="m")
    assert stream.text == "" and [c.content for c in stream][0] == "ok"
    assert sleeps[0] == 1.5
    assert 0.0 <= sleeps[1] <= 1.0


def test_5xx_retried_then_raised(server, client, sleeps):
    for _ in range(3):
        server.enqueue(error(500, {"error": {"message": "boom", "type": "server_error"}}))
    with pytest.raises(streamcoord.ServerError, match="boom"):
        list(client().stream_chat(MESSAGES, model="m"))
    assert len(server.requests) == 3
    assert len(sleeps) == 2 and all(0 <= s <= 8 for s in sleeps)


def test_400_is_not_retried(server, client, sleeps):
    server.enqueue(error(400, {"error": {"message": "bad model"}}))
    with pytest.raises(streamcoord.APIError) as info:
        list(client().stream_chat(MESSAGES, model="m"))
    assert type(info.value) is streamcoord.APIError and info.value.status == 400
    assert sleeps == []


def test_connection_refused_is_retried_then_connection_lost(sleeps, no_thread_leak):
    client = streamcoord.Client("openai", api_key=API_KEY, base_url="http://127.0.0.1:9/v1",
                                max_retries=streamcoord.Retry(1, sleep=sleeps.append))
    with pytest.raises(streamcoord.ConnectionLost, match="could not reach"):
        list(client.stream_chat(MESSAGES, model="m"))
    assert len(sleeps) == 1


def test_drop_mid_body_raises_connection_lost_after_the_delivered_chunks(server, client, sleeps):
    server.enqueue(openai_text(PIECES, drop_after=3))
    got = []
    with pytest.raises(streamcoord.ConnectionLost):
        for chunk in client().stream_chat(MESSAGES, model="m"):
            got.append(chunk.content)
    assert "".join(got) == "Hello, wor"
    assert sleeps == [] and len(server.requests) == 1  # never retried once content was delivered


def test_drop_before_any_content_is_retried(server, client, sleeps):
    server.enqueue(openai_text(PIECES, drop_after=0), openai_text(PIECES))
    stream = client().stream_chat(MESSAGES, model="m")
    assert "".join(c.content for c in stream) == "Hello, world!"
    assert len(sleeps) == 1


def test_clean_end_without_done_or_finish_is_connection_lost(server, client):
    server.enqueue(openai_text(PIECES, finish_reason=None, done=False))
    with pytest.raises(streamcoord.ConnectionLost, match="ended before"):
        list(client().stream_chat(MESSAGES, model="m"))


def test_error_event_inside_a_200_stream_is_classified_by_type(server, client, sleeps):
    err = {"error": {"message": "The server is overloaded", "type": "server_error", "code": None}}
    server.enqueue(sse([{"choices": [{"index": 0, "delta": {"content": "Hi"}}]}, err]))
    seen = []
    with pytest.raises(streamcoord.ServerError, match="overloaded"):
        list(client().stream_chat(MESSAGES, model="m", on_error=lambda s, b: seen.append((s, b))))
    assert seen == [(500, err)]


def test_json_error_where_a_stream_was_expected_is_an_api_error(server, client, sleeps):
    body = {"error": {"message": "streaming not supported"}}
    server.enqueue(error(200, body))
    seen = []
    with pytest.raises(streamcoord.APIError, match="streaming not supported") as info:
        list(client().stream_chat(MESSAGES, model="m", on_error=lambda s, b: seen.append((s, b))))
    assert type(info.value) is streamcoord.APIError and info.value.status == 200
    assert seen == [(200, body)] and sleeps == []


def test_json_error_of_a_known_type_is_classified_and_retried(server, client, sleeps):
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    server.enqueue(error(200, body), openai_text(PIECES))
    assert "".join(c.content for c in client().stream_chat(MESSAGES, model="m")) == "Hello, world!"
    assert len(sleeps) == 1


def test_json_answer_that_is_not_an_error_is_a_protocol_error(server, client):
    server.enqueue(error(200, {"choices": []}))
    with pytest.raises(streamcoord.ProtocolError, match="instead of an event stream"):
        list(client().stream_chat(MESSAGES, model="m"))


def test_retry_after_longer_than_max_retry_after_is_not_retried(server, client, sleeps):
    server.enqueue(error(429, {"error": {"message": "slow down", "type": "rate_limit_error"}}, headers={"Retry-After": "90"}))
    with pytest.raises(streamcoord.RateLimitError) as info:
        list(client().stream_chat(MESSAGES, model="m"))
    assert info.value.retry_after == 90.0 and sleeps == [] and len(server.requests) == 1


@pytest.mark.parametrize("kwargs, error, words", [
    ({"base_url": "localhost:8000/v1"}, ValueError, "http://"),
    ({"base_url": 123}, TypeError, "base_url"),
    ({"api_key": b"sk-bytes"}, TypeError, "api_key"),
    ({"timeout": float("nan")}, ValueError, "finite"),
    ({"timeout": float("inf")}, ValueError, "finite"),
])
def test_bad_client_arguments_say_what_to_pass(kwargs, error, words):
    kwargs.setdefault("api_key", API_KEY)
    with pytest.raises(error, match=words):
        streamcoord.Client("openai", **kwargs)


@pytest.mark.parametrize("options, error, words", [
    ({"stream_recovery": "no"}, TypeError, "True or False"),
    ({"track_metrics": "yes"}, TypeError, "True or False"),
    ({"recovery": {"strategy": "exact"}}, ValueError, "stream_recovery=True"),
])
def test_bad_stream_options_say_what_to_pass(options, error, words):
    client = streamcoord.Client("openai", api_key=API_KEY)
    with pytest.raises(error, match=words):
        client.stream_chat(MESSAGES, model="m", **options)


@pytest.mark.parametrize("messages, words", [
    ([{"role": "user"}], '"content"'),
    ([{"role": "user", "content": 123}], "str or a list"),
])
def test_bad_messages_say_what_to_pass(messages, words):
    with pytest.raises(TypeError, match=words):
        streamcoord.Client("openai", api_key=API_KEY).stream_chat(messages, model="m")


def test_over_long_line_is_a_protocol_error_not_unbounded_memory(server, client):
    server.enqueue(streamcoord_response((b"data: " + b"x" * 5000,)))
    with pytest.raises(streamcoord.ProtocolError, match="max_line_bytes"):
        list(client().stream_chat(MESSAGES, model="m", max_line_bytes=4096))


def test_non_json_event_is_a_protocol_error(server, client):
    server.enqueue(sse(["not json"], done=True))
    with pytest.raises(streamcoord.ProtocolError, match="not JSON"):
        list(client().stream_chat(MESSAGES, model="m"))


def test_api_key_never_appears_in_logs_reprs_errors_or_metrics(server, client, caplog):
    caplog.set_level(logging.DEBUG, logger="streamcoord")
    server.enqueue(error(401, {"error": {"message": "Incorrect API key provided: sk-tes***789"}}))
    server.enqueue(openai_text(PIECES))
    c = client()
    with pytest.raises(streamcoord.AuthenticationError) as info:
        list(c.stream_chat(MESSAGES, model="m"))
    stream = c.stream_chat(MESSAGES, model="m", track_metrics=True)
    list(stream)
    texts = [caplog.text, repr(c), repr(stream), str(info.value), repr(info.value),
             json.dumps(stream.metrics.as_dict()), repr(c.adapter.build_request(MESSAGES, {"model": "m"}, base_url="x", api_key=API_KEY))]
    for text in texts:
        assert API_KEY not in text
    assert "request POST" in caplog.text  # the lifecycle is logged at DEBUG
    assert all(hasattr(r, "stream_id") and hasattr(r, "provider") for r in caplog.records if r.name == "streamcoord")


def test_injected_session_is_used(server, client):
    import requests

    class CountingSession(requests.Session):
        sent = 0

        def request(self, *args, **kwargs):
            CountingSession.sent += 1
            return super().request(*args, **kwargs)

    server.enqueue(openai_text(PIECES))
    with CountingSession() as session:
        assert client(session=session).stream_chat(MESSAGES, model="m").text == ""
        assert "".join(c.content for c in client(session=session).stream_chat(MESSAGES, model="m")) == "Hello, world!"
    assert CountingSession.sent == 1


def test_exception_from_the_worker_keeps_its_cause(server, client):
    server.enqueue(openai_text(PIECES, drop_after=2, drop=Drop(reset=True)))
    with pytest.raises(streamcoord.ConnectionLost) as info:
        list(client().stream_chat(MESSAGES, model="m"))
    assert isinstance(info.value.__cause__, OSError)  # the reset, raised in the worker thread


def test_poll_returns_an_empty_list_while_the_server_is_quiet(server, client):
    release = threading.Event()
    from tests.support.fakeserver import Gate

    server.enqueue(openai_text(PIECES, stall_after=1, stall=Gate(release)))
    with client().stream_chat(MESSAGES, model="m") as stream:
        got = []
        while not got:
            got = stream.poll(timeout=2)
        assert [c.content for c in got] == ["Hello"]
        assert stream.poll(timeout=0.05) == []  # nothing new: the caller gets control back
        release.set()
        rest = []
        while True:
            batch = stream.poll(timeout=2)
            if batch is None:
                break
            rest += [c.content for c in batch]
    assert "".join(rest) == ", world!"


def test_close_while_waiting_for_the_response_headers_returns_promptly(no_thread_leak):
    """A provider that accepted the request but has not answered yet (queued, a slow
    proxy): close() must still end the worker, not leave it waiting for the idle timeout."""
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    got_request = threading.Event()
    peer_closed = threading.Event()

    def accept_and_say_nothing():
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            got_request.set()
            while conn.recv(65536):  # the rest of the request, then EOF when the client closes
                pass
            peer_closed.set()

    server_thread = threading.Thread(target=accept_and_say_nothing, daemon=True)
    server_thread.start()
    try:
        client = streamcoord.Client("openai", api_key=API_KEY, base_url=f"http://127.0.0.1:{listener.getsockname()[1]}/v1")
        stream = client.stream_chat(MESSAGES, model="m", timeout=60)
        stream.__enter__()
        assert got_request.wait(5)
        thread = worker_thread(stream)
        started = time.monotonic()
        stream.close()
        assert time.monotonic() - started < 2.0
        assert not thread.is_alive()
        assert peer_closed.wait(2), "the connection stayed open"
        assert stream.metrics.status == "cancelled"
    finally:
        listener.close()
        server_thread.join(2)


def test_end_marker_followed_by_more_bytes_ends_the_stream_promptly(server, client):
    """A proxy that keeps sending pings after [DONE] must not hold the answer back."""
    from tests.support.fakeserver import Response

    pings = []
    for _ in range(60):  # 3 s of keep-alives after the end
        pings += [Stall(timeout=0.05), b": ping\n\n"]
    server.enqueue(Response(parts=openai_text(PIECES).parts + tuple(pings)))
    started = time.monotonic()
    stream = client().stream_chat(MESSAGES, model="m", buffer_chunks=5, timeout=30)
    assert "".join(c.content for c in stream) == "Hello, world!"
    assert time.monotonic() - started < 2.5  # DRAIN_SECONDS, not the pings' 3 s or the idle timeout
    assert stream.metrics.status == "completed"


def test_closing_a_finished_stream_does_not_touch_a_connection_it_gave_back(server, client):
    """Stream A's body is complete (its connection back in the pool) while its consumer
    still works; stream B takes that connection; closing A must leave B alone."""
    from tests.support.fakeserver import Gate, Response

    body = b"".join(p for p in openai_text(["A", "B"]).parts if isinstance(p, bytes))
    server.enqueue(Response(parts=(body,), chunked=False, headers={"Content-Length": str(len(body))}))
    release_b = threading.Event()
    server.enqueue(openai_text(PIECES, stall_after=1, stall=Gate(release_b)))
    in_transform = threading.Event()
    leave_transform = threading.Event()

    def slow(chunk):
        if chunk.content == "B":
            in_transform.set()
            leave_transform.wait(5)
        return chunk

    c = client()
    a = c.stream_chat(MESSAGES, model="m", transform_chunk=slow)
    a.__enter__()
    assert in_transform.wait(5)  # A's body is read and its connection released
    b = c.stream_chat(MESSAGES, model="m")
    first = next(b)
    assert first.content == "Hello"
    leave_transform.set()
    a.close()
    release_b.set()
    assert first.content + "".join(ch.content for ch in b) == "Hello, world!"
