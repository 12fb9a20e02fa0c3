"""The Flask and Django examples over real HTTP: waitress serves the app, a requests-based
SSE client plays the browser, the FakeProvider plays the model (and its faults). The
examples detach each answer from its connection (one generation, followed by every
connection of the page); the ``tied`` tests cover the connection-tied mode (resume).
Several server processes: ``test_multiprocess.py``."""

from __future__ import annotations

import threading
import time
import wsgiref.util
from urllib.parse import urlencode

import pytest
import requests

from tests.support.fakeserver import Gate, error, openai_text
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
    assert '"chat/cancel?"' in response.text  # the Stop button ends the generation


def attach_threads():
    return [t for t in threading.enumerate() if t.name.startswith("streamcoord-attach-")]


@pytest.fixture
def tied(monkeypatch):
    """The examples with each answer tied to its connection (chat_common.DETACH False)."""
    import chat_common

    monkeypatch.setattr(chat_common, "DETACH", False)


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
    # The page follows the generation through the store: pieces persisted between two of
    # its reader's wakes arrive as one event, so only the text is exact, not the events.
    assert text == FULL
    done = events[-1]
    assert done.event == "done" and int(done.id) == len(FULL)
    assert done.json()["finish_reason"] == "stop"
    assert done.json()["usage"]["total_tokens"] == 10 + len(PIECES)
    metrics = done.json()["metrics"]
    assert metrics["status"] == "completed" and metrics["stream_id"] == "whole-1"
    assert len(server.requests) == 1
    sent = server.requests[0].json
    assert sent["model"] == MODEL and sent["messages"][-1] == {"role": "user", "content": PROMPT}


def test_a_browser_that_goes_away_stops_its_reader_but_never_the_generation(base_url, server, store, monkeypatch):
    import chat_common

    # No periodic metrics events: only the server noticing the closed connection
    # (web.disconnect_probe) can stop the reader while the model is quiet.
    monkeypatch.setattr(chat_common, "METRICS_INTERVAL", None)
    gate = threading.Event()
    server.enqueue(openai_text(PIECES, stall_after=3, stall=Gate(gate)))
    client = SSEClient(events_url(base_url, "gone-1"))
    text, _ = read_answer(client.events(), stop_after=1)
    client.close()

    deadline = time.monotonic() + 2
    while attach_threads() and time.monotonic() < deadline:
        attach_threads()[0].join(0.1)
    assert attach_threads() == [], "the reader outlived the browser by 2 s"
    assert not server.connection_closed.is_set(), "the generation stopped with the browser"
    gate.set()
    assert server.wait_for_responses_finished(1)
    assert wait_for_no_worker_threads(5) == []
    assert store.outcome("gone-1")["text"] == FULL  # generated to its end, once
    assert len(server.requests) == 1


def test_a_reconnect_with_last_event_id_follows_the_same_generation(base_url, server):
    gate = threading.Event()
    server.enqueue(openai_text(PIECES, stall_after=3, stall=Gate(gate)))
    first = SSEClient(events_url(base_url, "again-1"))
    shown, first_events = read_answer(first.events(), stop_after=1)
    first.close()
    last_event_id = first_events[-1].id
    assert int(last_event_id) == len(shown) > 0

    second = SSEClient(events_url(base_url, "again-1"), headers={"Last-Event-ID": last_event_id})
    try:
        events = second.events()
        gate.set()
        text, seen = read_answer(events, text=shown)
    finally:
        second.close()

    assert text == FULL
    assert "".join(e.json()["content"] for e in seen if e.event == "message") == FULL[len(shown):]
    assert [e.event for e in seen if e.event != "message"] == ["done"]  # no rewind, no replay
    assert len(server.requests) == 1, "the reconnect followed the generation; it did not start another"


def test_two_connections_of_one_answer_both_follow_its_one_generation(base_url, server):
    """The browser reconnected before the server noticed its old connection was gone:
    both connections read the one generation, and neither stops it."""
    gate = threading.Event()
    server.enqueue(openai_text(PIECES, stall_after=3, stall=Gate(gate)))
    old = SSEClient(events_url(base_url, "over-1"))
    old_events = old.events()
    shown, _ = read_answer(old_events, stop_after=1)
    new = SSEClient(events_url(base_url, "over-1"), headers={"Last-Event-ID": str(len(shown))})
    try:
        new_events = new.events()
        gate.set()
        assert read_answer(new_events, text=shown)[0] == FULL
        assert read_answer(old_events, text=shown)[0] == FULL
    finally:
        old.close()
        new.close()
    assert len(server.requests) == 1


def test_the_stop_endpoint_stops_the_generation_within_a_second(base_url, server):
    gate = threading.Event()
    server.enqueue(openai_text(PIECES, stall_after=3, stall=Gate(gate)))
    client = SSEClient(events_url(base_url, "stop-1"))
    try:
        events = client.events()
        shown, _ = read_answer(events, stop_after=1)
        assert requests.post(f"{base_url}/chat/cancel?stream_id=stop-1", timeout=10).status_code == 204
        assert server.connection_closed.wait(1.0), "the producer still generates 1 s after Stop returned"
        assert read_answer(events, text=shown)[1][-1].event == "done"  # the page's stream ends where it stopped
    finally:
        client.close()
        gate.set()
    assert requests.post(f"{base_url}/chat/cancel?stream_id=no%20spaces", timeout=10).status_code == 400
    assert requests.get(f"{base_url}/chat/cancel?stream_id=stop-1", timeout=10).status_code == 405
    assert len(server.requests) == 1


# -- the answer tied to its connection (DETACH False): a reconnect resumes it ---------------
def test_tied_a_browser_that_goes_away_stops_the_worker_and_the_upstream_connection(
    base_url, server, store, monkeypatch, tied
):
    import chat_common

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


def test_tied_a_reconnect_with_last_event_id_gets_exactly_the_rest(base_url, server, tied):
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


def test_a_reconnect_behind_the_stored_text_replays_what_the_browser_missed(base_url, server, store):
    gate = threading.Event()
    server.enqueue(openai_text(PIECES, stall_after=4, stall=Gate(gate)))
    first = SSEClient(events_url(base_url, "behind-1"))
    first_events = first.events()
    shown = ""
    while shown != "".join(PIECES[:4]):
        shown, _ = read_answer(first_events, text=shown, stop_after=1)
    first.close()

    # The browser only rendered the first piece before its connection broke.
    second = SSEClient(events_url(base_url, "behind-1"), headers={"Last-Event-ID": str(len(PIECES[0]))})
    try:
        events = second.events()
        replay = next(events)
        gate.set()
        text, rest = read_answer(events, text=PIECES[0] + replay.json()["content"])
    finally:
        second.close()
    assert replay.json() == {"content": "".join(PIECES[1:4])}  # the stored text it missed, at once
    assert text == FULL
    assert len(server.requests) == 1


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
    gate = threading.Event()
    server.enqueue(openai_text(PIECES, stall_after=2, stall=Gate(gate)))
    environ = {"PATH_INFO": "/chat/events", "QUERY_STRING": urlencode({"stream_id": "wsgi-1", "prompt": PROMPT})}
    wsgiref.util.setup_testing_defaults(environ)
    environ["HTTP_HOST"] = "127.0.0.1"
    started = []
    body = app(environ, lambda status, headers, exc_info=None: started.append((status, dict(headers))))
    chunks = iter(body)
    assert next(chunks).startswith(b"retry:")
    assert b'"content": "Rivers ' in next(chunks)
    assert started[0][0] == "200 OK" and started[0][1]["Content-Type"].startswith("text/event-stream")

    body.close()
    assert attach_threads() == []  # close() waits for this request's reader
    assert not server.connection_closed.is_set()  # the generation is not the request's
    gate.set()
    assert server.wait_for_responses_finished(1)
    assert wait_for_no_worker_threads(5) == []


@pytest.mark.parametrize("prompt", ["", "   "])
def test_an_empty_prompt_is_400(base_url, server, prompt):
    response = requests.get(events_url(base_url, "empty-1", prompt=prompt), timeout=10)
    assert response.status_code == 400 and "prompt" in response.text
