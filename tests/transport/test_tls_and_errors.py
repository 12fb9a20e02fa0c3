"""TLS verification, and what every low-level failure becomes: only streamcoord's errors
leave, each with what the user can do about it."""

from __future__ import annotations

import threading
import time

import pytest
import requests

import streamcoord
from tests.conftest import MESSAGES
from tests.support.rawserver import (
    LAST_CHUNK,
    READ,
    Close,
    HalfClose,
    Reset,
    Send,
    Stall,
    chunk,
    head,
    openai_events,
    sse_body,
)
from tests.transport._support import client_for, read_all

BODY = sse_body(["Sec", "ure"])


def test_https_with_the_callers_ca_bundle_streams_the_whole_answer(clean, tls_raw, ca_file):
    tls_raw.script(READ, Send(head(length=len(BODY)) + BODY), Close())
    session = requests.Session()
    session.verify = ca_file  # wins over REQUESTS_CA_BUNDLE in the environment
    assert read_all(client_for(tls_raw.base_url, session)) == "Secure"
    session.close()


def test_refused_certificate_is_not_retried_and_says_how_to_pass_a_ca_bundle(clean, tls_raw, session):
    tls_raw.script(READ, Send(head(length=len(BODY)) + BODY), Close())
    started = time.monotonic()
    with pytest.raises(streamcoord.ConnectionLost) as caught:
        read_all(client_for(tls_raw.base_url, session, retries=3))
    message = str(caught.value)
    assert "certificate" in message and "verify" in message and "session" in message
    assert len(tls_raw.connections) == 1  # at once: no retry
    assert time.monotonic() - started < 2


def test_reset_in_the_middle_of_the_body_is_connection_lost(clean, raw, session):
    raw.script(READ, Send(head(chunked=True) + chunk(BODY[:30])), Reset())
    with pytest.raises(streamcoord.ConnectionLost):
        read_all(client_for(raw.base_url, session))


def test_half_close_before_the_headers_is_connection_lost_and_retried(clean, raw, session):
    raw.script(READ, HalfClose(), Stall(timeout=2))
    with pytest.raises(streamcoord.ConnectionLost, match="could not reach"):
        read_all(client_for(raw.base_url, session, retries=1))
    assert len(raw.connections) == 2


def test_garbage_instead_of_a_status_line_is_connection_lost(clean, raw, session):
    raw.script(READ, Send(b"SSH-2.0-OpenSSH_9.6\r\n\r\n"), Close())
    with pytest.raises(streamcoord.ConnectionLost):
        read_all(client_for(raw.base_url, session))


def test_headers_that_never_come_are_a_stream_timeout(clean, raw, session):
    raw.script(READ, Stall(timeout=5))
    with pytest.raises(streamcoord.StreamTimeout, match="no response headers within 0.3s"):
        read_all(client_for(raw.base_url, session), timeout=0.3)


def test_a_stall_mid_body_is_the_idle_timeout(clean, raw, session):
    raw.script(READ, Send(head(chunked=True) + chunk(BODY[:30])), Stall(timeout=5))
    with pytest.raises(streamcoord.StreamTimeout, match="idle timeout"):
        read_all(client_for(raw.base_url, session), timeout=0.3)


def test_what_arrived_while_the_worker_was_paused_past_the_idle_timeout_is_read_not_timed_out(clean, raw, session):
    # The worker reads the first half of an event (no content yet), then stops for longer
    # than the idle timeout, and the rest of the event arrives meanwhile: it is waiting on
    # the socket when the worker goes on, so the answer is complete, not an idle timeout.
    # What stops the worker is a profiler's hook (as a tracing or continuous profiler
    # runs in every thread of an application), slow once: at the worker's first call
    # after it holds the half event (a local of the calling frame), so on every Python
    # the pause falls between that read and the worker's next look at the clock.
    idle = 0.3
    first, second, final = openai_events(["Hello", " world"])
    half = second[:25]
    got_first, rest_sent = threading.Event(), threading.Event()
    raw.script(READ, Send(head(chunked=True) + chunk(first)), Stall(got_first), Send(chunk(half)),
               Stall(rest_sent), Send(chunk(second[25:]) + chunk(final) + LAST_CHUNK), Close())
    armed = threading.Event()

    def profiler(frame, event, arg):
        if (armed.is_set() and event == "call" and threading.current_thread().name.startswith("streamcoord-")
                and frame.f_back is not None
                and any(value.__class__ is bytes and value == half for value in frame.f_back.f_locals.values())):
            armed.clear()
            rest_sent.set()  # the server sends the rest while the worker is stopped
            time.sleep(idle * 2)

    got = []
    threading.setprofile(profiler)  # for the threads started from here on: the stream's worker
    try:
        with client_for(raw.base_url, session).stream_chat(MESSAGES, model="m", timeout=idle) as stream:
            for chunk_ in stream:
                got.append(chunk_.content)
                if len(got) == 1:
                    armed.set()
                    got_first.set()
    finally:
        threading.setprofile(None)
    assert not armed.is_set()  # the pause happened
    assert got == ["Hello", " world", ""]
