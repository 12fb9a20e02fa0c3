"""streamcoord.web without a server: the events sse_body writes, its timing (on a fake
clock), errors, close(), open_stream's choice between a new stream and a resume, and the
disconnect probes."""

from __future__ import annotations

import json
import socket
from types import SimpleNamespace

import pytest

import streamcoord
from streamcoord import StreamMetrics, web

QUIET = object()  # a poll that times out: nothing arrived


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now


class FakeStream:
    """Plays a ChatStream for sse_body: each poll takes the next scripted step."""

    def __init__(self, clock, steps, stream_id="s-1"):
        self.clock = clock
        self.steps = list(steps)
        self.polls = []  # the timeouts asked for
        self.closed = False
        self.stream_id = stream_id
        self.provider = "openai"
        self.finish_reason = "stop"
        self.usage = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
        self.metrics = StreamMetrics(stream_id, "openai", "completed", 12.5, 3, 300, 0, 240.0, 24000.0, 1.0, 0, 0)

    def poll(self, timeout):
        self.polls.append(timeout)
        step = self.steps.pop(0)
        if step is QUIET:
            self.clock.now += timeout
            return []
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, (int, float)):  # a batch that arrives after this many seconds
            self.clock.now += step
            return [streamcoord.Chunk(content="x")]
        return step

    def close(self):
        self.closed = True


@pytest.fixture
def clock(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(web, "time", clock)
    return clock


def chunk(content="", **metadata):
    return streamcoord.Chunk(content=content, metadata=metadata)


def parse(data):
    """The events in some bytes: (fields dict, ...) per event; comments as ("comment", text)."""
    out = []
    for block in data.decode("ascii").split("\n\n")[:-1]:
        if block.startswith(":"):
            out.append(("comment", block[1:].strip()))
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        out.append(fields)
    return out


def run(stream, **kwargs):
    body = web.sse_body(stream, **kwargs)
    return b"".join(body)


def test_each_chunk_is_one_event_whose_id_is_the_characters_the_browser_has(clock):
    stream = FakeStream(clock, [[chunk("Hé "), chunk('said "hi"\nand\r\nleft'), chunk("")], [chunk("\U0001F600")], None])
    events = parse(run(stream))
    assert events[0] == {"retry": "2000"}
    assert [e["id"] for e in events[1:4]] == ["3", "22", "23"]
    assert [json.loads(e["data"])["content"] for e in events[1:4]] == ["Hé ", 'said "hi"\nand\r\nleft', "\U0001F600"]
    done = events[4]
    assert done["event"] == "done" and done["id"] == "23"
    assert json.loads(done["data"]) == {
        "finish_reason": "stop", "usage": stream.usage, "metrics": stream.metrics.as_dict(),
    }
    assert stream.closed


def test_a_rewind_lowers_the_id_and_a_replay_is_plain_content(clock):
    rewind = chunk("", recovery={"attempt": 1, "strategy": "paragraph", "rewind": 4})
    replay = chunk("stored text", replay=True)
    stream = FakeStream(clock, [[chunk("abcdefgh")], [rewind, chunk("XY")], [replay], None])
    events = parse(run(stream))[1:]
    assert [(e.get("event"), e["id"], json.loads(e["data"])) for e in events[:4]] == [
        (None, "8", {"content": "abcdefgh"}),
        ("rewind", "4", {"rewind": 4}),
        (None, "6", {"content": "XY"}),
        (None, "17", {"content": "stored text"}),
    ]


def test_a_resumed_stream_counts_from_the_offset_open_stream_took_up(clock):
    stream = FakeStream(clock, [[chunk("", recovery={"attempt": 0, "strategy": "paragraph", "rewind": 5})], [chunk("ok")], None])
    events = parse(run(stream, offset=40))[1:]
    assert [(e.get("event"), e["id"]) for e in events] == [("rewind", "35"), (None, "37"), ("done", "37")]


def test_keep_alives_and_metrics_while_the_model_is_quiet(clock):
    stream = FakeStream(clock, [QUIET] * 7 + [None])
    events = parse(run(stream, keepalive=2.0, metrics_interval=3.0))[1:]
    # t=2 keep-alive, t=3 metrics (counts as traffic), t=5 keep-alive, t=6 metrics, t=8 keep-alive...
    kinds = [e[0] if isinstance(e, tuple) else e.get("event") for e in events]
    assert kinds == ["comment", "metrics", "comment", "metrics", "comment", "metrics", "comment", "done"]
    assert stream.polls == [2.0, 1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0]
    assert json.loads(events[1]["data"])["chunks_received"] == 3


def test_content_postpones_the_keep_alive(clock):
    stream = FakeStream(clock, [1.5, 1.5, 1.5, None])  # content every 1.5 s, keepalive 2 s
    out = run(stream, keepalive=2.0)
    assert b"keep-alive" not in out and out.count(b'"content"') == 3


@pytest.mark.parametrize(
    "exc,name",
    [
        (streamcoord.ServerError("upstream said: key sk-SECRET was wrong", status=500, body={"key": "sk-SECRET"}), "ServerError"),
        (streamcoord.RecoveryFailed("gave up: https://internal.example/v1 sk-SECRET", partial_text="sk-SECRET"), "RecoveryFailed"),
        (streamcoord.StreamTimeout("no content for 120s from https://internal.example"), "StreamTimeout"),
        (KeyError("sk-SECRET"), "InternalError"),
    ],
)
def test_an_error_ends_the_stream_with_a_short_safe_event(clock, exc, name):
    stream = FakeStream(clock, [[chunk("partial")], exc])
    events = parse(run(stream))
    last = events[-1]
    assert last["event"] == "error" and last["id"] == "7"
    data = json.loads(last["data"])
    assert data["error"] == name and data["message"].startswith(name + ": ")
    assert "SECRET" not in last["data"] and "internal.example" not in last["data"]
    assert stream.closed


def test_the_disconnect_probe_ends_the_body_and_closes_the_stream(clock):
    answers = iter([False, False, True])
    stream = FakeStream(clock, [QUIET, QUIET, QUIET, QUIET])
    out = run(stream, disconnected=lambda: next(answers))
    assert stream.polls == [0.5, 0.5, 0.5]  # asked every half second; gone on the third
    assert stream.closed and out == b"retry: 2000\n\n"


def test_close_closes_the_stream_before_and_during_iteration(clock):
    stream = FakeStream(clock, [[chunk("a")], QUIET, None])
    body = web.sse_body(stream)
    body.close()
    assert stream.closed and list(body) == []

    stream = FakeStream(clock, [[chunk("a")], QUIET, None])
    body = web.sse_body(stream)
    assert next(body) == b"retry: 2000\n\n" and b'"a"' in next(body)
    body.close()
    body.close()  # idempotent
    assert stream.closed and list(body) == []


def test_a_stream_closed_elsewhere_ends_the_body_quietly(clock):
    stream = FakeStream(clock, [ValueError("this stream was closed")])
    stream.closed = True  # e.g. a reconnect of the same answer took over (open_stream)
    assert run(stream) == b"retry: 2000\n\n"


@pytest.mark.parametrize("kwargs", [{"keepalive": 0}, {"keepalive": True}, {"metrics_interval": -1}, {"disconnected": 3}])
def test_bad_sse_body_arguments(clock, kwargs):
    with pytest.raises((ValueError, TypeError)):
        web.sse_body(FakeStream(clock, []), **kwargs)


def test_sse_headers():
    assert dict(web.SSE_HEADERS) == {
        "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache", "X-Accel-Buffering": "no",
    }


# -- open_stream --------------------------------------------------------------------------------
class RecordingClient:
    def __init__(self, clock):
        self.calls = []
        self.clock = clock

    def stream_chat(self, messages, **options):
        self.calls.append(("stream_chat", messages, options))
        return FakeStream(self.clock, [None], options["stream_id"])

    def resume(self, stream_id, offset=0, **options):
        self.calls.append(("resume", stream_id, offset, options))
        return FakeStream(self.clock, [None], stream_id)


MESSAGES = [{"role": "user", "content": "hi"}]
OPTIONS = {"model": "m", "temperature": 0.2, "track_metrics": True, "recovery": {"strategy": "exact"}}


@pytest.mark.parametrize("last_event_id", [None, "", "  "])
def test_open_stream_without_last_event_id_starts_a_recoverable_stream(clock, last_event_id):
    client = RecordingClient(clock)
    stream = web.open_stream(client, MESSAGES, stream_id="a-1", last_event_id=last_event_id, **OPTIONS)
    assert client.calls == [("stream_chat", MESSAGES, dict(OPTIONS, stream_id="a-1", stream_recovery=True))]
    assert web.sse_body(stream).offset == 0


def test_open_stream_with_last_event_id_resumes_from_that_offset_with_the_stream_options(clock):
    client = RecordingClient(clock)
    stream = web.open_stream(client, MESSAGES, stream_id="a-2", last_event_id=" 42 ", **OPTIONS)
    assert client.calls == [("resume", "a-2", 42, {"track_metrics": True, "recovery": {"strategy": "exact"}})]
    assert web.sse_body(stream).offset == 42  # the ids go on from what the browser has


@pytest.mark.parametrize("last_event_id", ["-1", "1.5", "abc", "1e3", "٣"])
def test_open_stream_rejects_a_last_event_id_that_is_not_an_offset(clock, last_event_id):
    client = RecordingClient(clock)
    with pytest.raises(ValueError, match="Last-Event-ID"):
        web.open_stream(client, MESSAGES, stream_id="a-3", last_event_id=last_event_id)
    assert client.calls == []


def test_open_stream_insists_on_recovery_and_a_stream_id(clock):
    with pytest.raises(ValueError, match="stream_recovery"):
        web.open_stream(RecordingClient(clock), MESSAGES, stream_id="a-4", stream_recovery=False)
    with pytest.raises(TypeError, match="stream_id"):
        web.open_stream(RecordingClient(clock), MESSAGES, stream_id=None)


def test_open_stream_closes_the_stream_still_serving_the_same_answer(clock):
    client = RecordingClient(clock)
    old = web.open_stream(client, MESSAGES, stream_id="a-5")
    other = web.open_stream(client, MESSAGES, stream_id="a-6")
    new = web.open_stream(client, MESSAGES, stream_id="a-5", last_event_id="3")
    assert old.closed and not other.closed and not new.closed


def test_open_stream_lets_recovery_failed_out(tmp_path):
    from recovery_store import MemoryStore

    client = streamcoord.Client("openai", api_key="k", base_url="http://127.0.0.1:9/v1", recovery_store=MemoryStore())
    with pytest.raises(streamcoord.RecoveryFailed):
        web.open_stream(client, MESSAGES, stream_id="unknown-1", last_event_id="5", model="m")


# -- disconnect probes ---------------------------------------------------------------------------
def test_disconnect_probe_uses_waitress_and_knows_when_it_cannot_tell():
    flag = SimpleNamespace(gone=False)
    probe = web.disconnect_probe({"waitress.client_disconnected": lambda: flag.gone})
    assert probe() is False
    flag.gone = True
    assert probe() is True
    assert web.disconnect_probe({"wsgi.version": (1, 0)}) is None


def test_disconnect_probe_peeks_at_a_gunicorn_socket():
    server_side, browser = socket.socketpair()
    try:
        probe = web.disconnect_probe({"gunicorn.socket": server_side})
        assert probe() is False
        browser.sendall(b"GET /next HTTP/1.1\r\n")  # a pipelined request is not a disconnect
        assert probe() is False
        assert server_side.recv(100)  # (and the peek left it for the server to read)
        browser.close()
        assert probe() is True
    finally:
        server_side.close()
        browser.close()
