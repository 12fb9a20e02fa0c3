"""Cancel wakes the worker at once on every kind of connection: a ``break`` out of the
loop, or ``close()`` from another thread, returns promptly, the server sees the
connection closed, and no thread or socket is left (the ``clean`` fixture)."""

from __future__ import annotations

import threading
import time

import pytest
import requests

import streamcoord
from tests.conftest import MESSAGES
from tests.support.rawserver import READ, RawServer, Send, Stall, chunk, head, openai_events
from tests.transport._support import client_for

FIRST = openai_events(["Hello"])[0]
PROMPT = 1.0  # seconds: far below the 2 s close() join and the idle timeout


def stalled_after_first_event(kind: str):
    """The script of a server that sends one event, then nothing, on a connection of ``kind``."""
    if kind == "HTTP/1.0":
        return [READ, Send(head(version="HTTP/1.0") + FIRST), Stall()]
    if kind == "Connection: close":
        return [READ, Send(head(chunked=True, headers={"Connection": "close"}) + chunk(FIRST)), Stall()]
    return [READ, Send(head(chunked=True) + chunk(FIRST)), Stall()]


@pytest.fixture(params=["keep-alive", "Connection: close", "HTTP/1.0"])
def kind(request):
    return request.param


@pytest.fixture(params=["streamcoord session", "injected requests.Session"])
def make_session(request):
    sessions = []

    def make():
        session = streamcoord.new_session() if request.param == "streamcoord session" else requests.Session()
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        session.close()


def break_after_first_chunk(client) -> float:
    """Break out of the loop while the stream is still referenced; seconds it took."""
    with client.stream_chat(MESSAGES, model="m", timeout=30) as stream:
        for chunk_ in stream:
            assert chunk_.content == "Hello"
            started = time.monotonic()
            break
        took = time.monotonic() - started
        assert stream is not None  # still referenced after the break
    return took


@pytest.mark.parametrize("route", ["direct", "HTTP proxy"])
def test_break_stops_the_stream_at_once(clean, raw, make_session, kind, route, request):
    raw.script(*stalled_after_first_event(kind))
    session = make_session()
    if route == "HTTP proxy":
        proxy = request.getfixturevalue("proxy")
        session.proxies = {"http": proxy.url}
    assert break_after_first_chunk(client_for(raw.base_url, session)) < PROMPT
    assert raw.connections[-1].closed.wait(PROMPT)
    if route == "HTTP proxy":
        assert proxy.lines and proxy.lines[0].startswith("POST http://127.0.0.1")


@pytest.mark.parametrize("route", ["direct", "HTTP proxy (CONNECT)", "HTTPS proxy (TLS in TLS)"])
def test_break_stops_an_https_stream_at_once(clean, tls_raw, make_session, ca_file, kind, route, request):
    tls_raw.script(*stalled_after_first_event(kind))
    session = make_session()
    session.verify = ca_file
    if route != "direct":
        proxy = request.getfixturevalue("proxy" if route.startswith("HTTP proxy") else "tls_proxy")
        session.proxies = {"https": proxy.url}
    assert break_after_first_chunk(client_for(tls_raw.base_url, session)) < PROMPT
    assert tls_raw.connections[-1].closed.wait(PROMPT)
    if route != "direct":
        assert proxy.lines[0].startswith("CONNECT 127.0.0.1:")


def close_from_another_thread(stream, server_conn) -> float:
    """A consumer blocked in the loop; close() from this thread. Seconds close() took."""
    ended = threading.Event()

    def consume():
        try:
            for _ in stream:
                pass
        except streamcoord.StreamcoordError:
            pass
        except ValueError:  # iterating a closed stream
            pass
        ended.set()

    consumer = threading.Thread(target=consume)
    consumer.start()
    assert server_conn().stalled.wait(5)
    started = time.monotonic()
    stream.close()
    took = time.monotonic() - started
    assert ended.wait(PROMPT)
    consumer.join()
    return took


def test_close_while_waiting_for_the_headers_is_prompt(clean, raw, make_session):
    raw.script(READ, Stall())
    stream = client_for(raw.base_url, make_session()).stream_chat(MESSAGES, model="m", timeout=30)
    assert close_from_another_thread(stream, lambda: (raw.wait_connections(1), raw.connections[0])[1]) < PROMPT
    assert raw.connections[0].closed.wait(PROMPT)


def test_close_while_waiting_for_the_headers_of_an_https_answer_is_prompt(clean, tls_raw, make_session, ca_file):
    tls_raw.script(READ, Stall())
    session = make_session()
    session.verify = ca_file
    stream = client_for(tls_raw.base_url, session).stream_chat(MESSAGES, model="m", timeout=30)
    assert close_from_another_thread(stream, lambda: (tls_raw.wait_connections(1), tls_raw.connections[0])[1]) < PROMPT
    assert tls_raw.connections[0].closed.wait(PROMPT)


def test_close_while_waiting_for_headers_on_a_kept_alive_connection_is_prompt(clean, raw, session):
    body = b"".join(openai_events(["one"]))
    raw.script(READ, Send(head(length=len(body)) + body), READ, Stall())
    client = client_for(raw.base_url, session)
    with client.stream_chat(MESSAGES, model="m") as first:
        assert first.text == "" and "".join(c.content for c in first) == "one"
    stream = client.stream_chat(MESSAGES, model="m", timeout=30)
    assert close_from_another_thread(stream, lambda: raw.connections[0]) < PROMPT
    assert len(raw.connections) == 1  # the second request reused the connection
    assert raw.connections[0].closed.wait(PROMPT)


def test_fifty_connection_close_streams_closed_together_each_close_promptly(clean, session):
    with RawServer() as raw:
        raw.script(*stalled_after_first_event("Connection: close"))
        client = client_for(raw.base_url, session)
        streams = [client.stream_chat(MESSAGES, model="m", timeout=30) for _ in range(50)]
        for stream in streams:
            assert next(iter(stream)).content == "Hello"
        took = [0.0] * len(streams)
        go = threading.Barrier(len(streams))

        def close(i):
            go.wait()
            started = time.monotonic()
            streams[i].close()
            took[i] = time.monotonic() - started

        closers = [threading.Thread(target=close, args=(i,)) for i in range(len(streams))]
        for thread in closers:
            thread.start()
        for thread in closers:
            thread.join()
        assert max(took) < PROMPT, sorted(took)[-5:]
        assert all(conn.closed.wait(PROMPT) for conn in raw.connections)
        assert len(raw.connections) == 50


@pytest.mark.parametrize("kind", ["keep-alive", "Connection: close", "HTTP/1.0"])
def test_total_deadline_ends_a_read_the_idle_timeout_would_let_wait_on(clean, raw, session, kind):
    # Idle 1.8 s, total 1 s; content at once and after 0.8 s, then nothing: the read after
    # the second event may wait only until the deadline (1 s), not a whole idle timeout
    # (2.6 s) nor the whole total again (1.8 s). The bound leaves a loaded machine 0.6 s
    # (a GC pause, a late wake-up) and fails every read that waits on past the deadline:
    # those end at 1.8 s or later, and load only makes them later.
    second = openai_events(["Hello", " again"])[1]
    script = stalled_after_first_event(kind)[:-1]
    raw.script(*script, Stall(timeout=0.8), Send(second if kind == "HTTP/1.0" else chunk(second)), Stall())
    client = client_for(raw.base_url, session)
    started = time.monotonic()
    got = []
    with pytest.raises(streamcoord.StreamTimeout, match="deadline"):
        for chunk_ in client.stream_chat(MESSAGES, model="m", timeout=streamcoord.Timeout(1.8, total=1.0)):
            got.append(chunk_.content)
    assert time.monotonic() - started < 1.0 + 0.6
    assert got == ["Hello", " again"]  # the second event came inside the idle timeout


def test_close_while_waiting_for_headers_through_an_https_proxy_is_prompt(clean, tls_raw, tls_proxy, make_session, ca_file):
    tls_raw.script(READ, Stall())
    session = make_session()
    session.verify = ca_file
    session.proxies = {"https": tls_proxy.url}
    stream = client_for(tls_raw.base_url, session).stream_chat(MESSAGES, model="m", timeout=30)
    assert close_from_another_thread(stream, lambda: (tls_raw.wait_connections(1), tls_raw.connections[0])[1]) < PROMPT
    assert tls_raw.connections[0].closed.wait(PROMPT)


def test_close_during_the_tls_handshake_stops_the_stream_once_the_socket_is_known(clean, server_tls, ca_file):
    # Our connections tell the transport their socket as soon as they have one: a close()
    # that came during the handshake (where there is no socket to shut down yet) takes
    # effect the moment the handshake ends, instead of after the answer's idle timeout.
    gate = threading.Event()
    with RawServer(tls=server_tls, handshake_gate=gate) as server:
        server.script(READ, Stall())
        session = streamcoord.new_session()
        session.verify = ca_file
        stream = client_for(server.base_url, session).stream_chat(MESSAGES, model="m", timeout=30)
        consumer = threading.Thread(target=lambda: [None for _ in stream])
        consumer.start()
        assert server.wait_connections(1)
        closer = threading.Thread(target=stream.close)
        closer.start()
        # Synchronise only (nothing is asserted on it): close() has reached the worker,
        # which is still in the handshake.
        assert stream._worker._cancelled.wait(PROMPT)
        started = time.monotonic()
        gate.set()
        closer.join()
        consumer.join(PROMPT)
        assert not consumer.is_alive()
        assert time.monotonic() - started < PROMPT
        assert server.connections[0].closed.wait(PROMPT)
        session.close()
