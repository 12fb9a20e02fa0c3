"""The Flask and Django examples over real HTTP: waitress serves the app, a requests-based
SSE client plays the browser, the FakeProvider plays the model (and its faults)."""

from __future__ import annotations

import wsgiref.util
from urllib.parse import urlencode

import pytest
import requests

from tests.support.fakeserver import error, openai_text
from tests.web.conftest import MODEL
from tests.web.support import SSEClient, read_answer, wait_for_no_worker_threads

PIECES = ["Rivers ", "carve ", "stone ", "slowly.\n\n", "The sea ", "is ", "patient ", "too."]
FULL = "".join(PIECES)
PROMPT = "Write about rivers"


def events_url(base_url, stream_id, prompt=PROMPT):
    return f"{base_url}/chat/events?" + urlencode({"stream_id": stream_id, "prompt": prompt})


def test_the_page_is_served(base_url):
    response = requests.get(base_url + "/", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert "new EventSource(" in response.text and 'id="answer"' in response.text


def test_a_whole_answer_streams_through_the_sse_endpoint(base_url, server):
    server.enqueue(openai_text(PIECES, usage=True))
    client = SSEClient(events_url(base_url, "whole-1"))
    try:
        text, events = read_answer(client.events())
    finally:
        client.close()

    headers = client.response.headers
    assert headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert headers["Cache-Control"] == "no-cache" and headers["X-Accel-Buffering"] == "no"
    assert client.retry == 2000
    assert text == FULL
    contents = [e for e in events if e.event == "message"]
    assert [e.json()["content"] for e in contents] == PIECES  # one event per chunk, in order
    done = events[-1]
    assert done.event == "done" and int(done.id) == len(FULL)
    assert done.json()["finish_reason"] == "stop"
    assert done.json()["usage"]["total_tokens"] == 10 + len(PIECES)
    metrics = done.json()["metrics"]
    assert metrics["status"] == "completed" and metrics["stream_id"] == "whole-1"
    assert metrics["chunks_received"] >= len(PIECES) and metrics["bytes_received"] > 0
    sent = server.requests[0].json
    assert sent["model"] == MODEL and sent["messages"][-1] == {"role": "user", "content": PROMPT}


def test_a_browser_that_goes_away_stops_the_worker_and_the_upstream_connection(base_url, server, store, monkeypatch):
    import chat_common

    # No periodic metrics events: while the model is quiet nothing is written for 15 s, so
    # only the server noticing the closed connection (web.disconnect_probe) can stop the stream.
    monkeypatch.setattr(chat_common, "METRICS_INTERVAL", None)
    server.enqueue(openai_text(PIECES, stall_after=3))  # then the model goes quiet
    client = SSEClient(events_url(base_url, "gone-1"))
    text, _ = read_answer(client.events(), stop_after=3)
    assert server.stalled.wait(5)
    client.close()

    assert server.connection_closed.wait(2), "the upstream connection outlived the browser by 2 s"
    assert wait_for_no_worker_threads(2) == []
    record = store.load("gone-1")
    assert record.status == "streaming" and record.text == text == "".join(PIECES[:3])  # resumable


def test_a_reconnect_with_last_event_id_gets_exactly_the_rest(base_url, server):
    server.enqueue(openai_text(PIECES, stall_after=3))
    first = SSEClient(events_url(base_url, "again-1"))
    shown, first_events = read_answer(first.events(), stop_after=3)
    first.close()
    assert server.connection_closed.wait(2)
    last_event_id = first_events[-1].id
    assert int(last_event_id) == len(shown) == len("".join(PIECES[:3]))

    server.enqueue(openai_text(PIECES[3:]))  # the continuation: what the model writes next
    second = SSEClient(events_url(base_url, "again-1"), headers={"Last-Event-ID": last_event_id})
    try:
        text, events = read_answer(second.events(), text=shown)
    finally:
        second.close()

    assert text == FULL
    contents = [e.json()["content"] for e in events if e.event == "message"]
    assert "".join(contents) == FULL[len(shown):]  # the rest, and nothing the browser had
    assert [e.event for e in events if e.event != "message"] == ["done"]  # no rewind, no replay
    assert int(events[0].id) == len(shown) + len(PIECES[3])
    continuation = server.requests[1].json["messages"]
    assert {"role": "assistant", "content": shown} in continuation  # the model continues the stored text


def test_a_reconnect_behind_the_stored_text_replays_what_the_browser_missed(base_url, server):
    server.enqueue(openai_text(PIECES, stall_after=4))
    first = SSEClient(events_url(base_url, "behind-1"))
    read_answer(first.events(), stop_after=4)
    first.close()
    assert server.connection_closed.wait(2)

    # The browser only rendered the first piece before its connection broke.
    server.enqueue(openai_text(PIECES[4:]))
    second = SSEClient(events_url(base_url, "behind-1"), headers={"Last-Event-ID": str(len(PIECES[0]))})
    try:
        text, events = read_answer(second.events(), text=PIECES[0])
    finally:
        second.close()
    assert text == FULL
    assert events[0].json() == {"content": "".join(PIECES[1:4])}  # the stored text it missed, at once
    assert [e.json()["content"] for e in events[1:-1]] == PIECES[4:]


def test_a_reconnect_takes_over_from_a_connection_the_server_still_serves(base_url, server):
    """The browser reconnected before the server noticed its old connection was gone: the
    old stream is closed first, so only one worker continues (and writes) the answer."""
    server.enqueue(openai_text(PIECES, stall_after=3))
    old = SSEClient(events_url(base_url, "over-1"))
    old_events = old.events()
    shown, _ = read_answer(old_events, stop_after=3)
    assert server.stalled.wait(5)

    server.enqueue(openai_text(PIECES[3:]))
    new = SSEClient(events_url(base_url, "over-1"), headers={"Last-Event-ID": str(len(shown))})
    try:
        text, _ = read_answer(new.events(), text=shown)
        assert server.connection_closed.wait(2)  # the old upstream connection was closed
        assert list(old_events) == []  # and the old response ended, with neither done nor error
    finally:
        old.close()
        new.close()
    assert text == FULL
    assert len(server.requests) == 2


def test_a_reconnect_to_an_unknown_answer_is_410_and_a_bad_last_event_id_is_400(base_url, server):
    gone = requests.get(events_url(base_url, "never-started"), headers={"Last-Event-ID": "12"}, timeout=10)
    assert gone.status_code == 410  # EventSource stops reconnecting on it
    bad = requests.get(events_url(base_url, "never-started"), headers={"Last-Event-ID": "12abc"}, timeout=10)
    assert bad.status_code == 400 and "Last-Event-ID" in bad.text
    bad_id = requests.get(events_url(base_url, "no spaces allowed"), timeout=10)
    assert bad_id.status_code == 400 and "stream_id" in bad_id.text
    assert server.requests == []


def test_a_provider_error_ends_the_stream_with_a_safe_error_event(base_url, server):
    secret = {"error": {"message": "Incorrect API key provided: sk-test-SECRET-0123456789", "type": "invalid_request_error"}}
    server.enqueue(error(401, secret))
    client = SSEClient(events_url(base_url, "fails-1"))
    try:
        _, events = read_answer(client.events())
    finally:
        client.close()
    assert [e.event for e in events] == ["error"]
    assert events[0].json()["error"] == "AuthenticationError"
    assert "SECRET" not in events[0].data and "Incorrect" not in events[0].data


# -- close() reaches the body through the framework (no server in between) ---------------------
def test_the_framework_passes_close_on_to_the_body(app, server):
    """What a WSGI server does when the browser goes away: stop iterating, call close()."""
    server.enqueue(openai_text(PIECES, stall_after=2))
    environ = {"PATH_INFO": "/chat/events", "QUERY_STRING": urlencode({"stream_id": "wsgi-1", "prompt": PROMPT})}
    wsgiref.util.setup_testing_defaults(environ)
    environ["HTTP_HOST"] = "127.0.0.1"
    started = []
    body = app(environ, lambda status, headers, exc_info=None: started.append((status, dict(headers))))
    chunks = iter(body)
    assert next(chunks).startswith(b"retry:")
    assert b'"content": "Rivers "' in next(chunks)
    assert started[0][0] == "200 OK" and started[0][1]["Content-Type"].startswith("text/event-stream")
    assert server.stalled.wait(5)

    body.close()
    assert server.connection_closed.wait(2)
    assert wait_for_no_worker_threads(2) == []


@pytest.mark.parametrize("prompt", ["", "   "])
def test_an_empty_prompt_is_400(base_url, server, prompt):
    response = requests.get(events_url(base_url, "empty-1", prompt=prompt), timeout=10)
    assert response.status_code == 400 and "prompt" in response.text
