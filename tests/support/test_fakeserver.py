"""Self-tests of the fake provider server, driven with plain ``requests`` (not streamcoord)."""
import json
import socket
import threading

import pytest
import requests

from tests.support.environment import CONFORMANCE_DIR
from tests.support.fakeserver import (
    Drop,
    FakeProvider,
    Gate,
    Response,
    Stall,
    anthropic_text,
    error,
    gemini_text,
    mistral_text,
    ollama_text,
    openai_text,
    raw_file,
    sse,
)


def conformance_file(name):
    return str(CONFORMANCE_DIR / name)


@pytest.fixture
def server():
    with FakeProvider() as s:
        yield s
    assert s.errors == []


@pytest.fixture
def session():
    with requests.Session() as s:
        yield s


def sse_events(body):
    """Minimal SSE split for these tests: list of (event, data) per blank-line-separated block."""
    text = body.decode("utf-8").replace("\r\n", "\n")
    assert text.endswith("\n\n")
    events = []
    for block in text[:-2].split("\n\n"):
        name, data = None, []
        for line in block.split("\n"):
            field, _, value = line.partition(": ")
            if field == "event":
                name = value
            else:
                assert field == "data", line
                data.append(value)
        events.append((name, "\n".join(data)))
    return events


def sse_json(body):
    return [(name, json.loads(data)) for name, data in sse_events(body) if data != "[DONE]"]


def test_chunked_parts_arrive_as_separate_chunks(server, session):
    server.enqueue(Response(parts=(b"hello", b" ", b"world\n")))
    r = session.get(server.base_url + "/x", stream=True)
    assert r.status_code == 200
    assert r.headers["Transfer-Encoding"] == "chunked"
    assert r.headers["Content-Type"] == "text/event-stream"
    assert list(r.raw.read_chunked()) == [b"hello", b" ", b"world\n"]


def test_parts_are_streamed_not_buffered(server, session):
    gate = threading.Event()
    server.enqueue(Response(parts=(b"first", Gate(gate), b"second")))
    r = session.get(server.base_url, stream=True)
    chunks = r.raw.read_chunked()
    assert next(chunks) == b"first"  # arrives while the gate is still closed
    assert server.responses_finished == 0
    gate.set()
    assert list(chunks) == [b"second"]
    assert server.wait_for_responses_finished(1)
    assert server.outcomes == ["complete"]
    assert not server.stalled.is_set()  # a Gate is not a Stall


def test_fifo_order_default_and_empty_queue_500(server, session):
    server.enqueue(error(400, {"n": 1}), error(401, "second"))
    first, second = session.post(server.base_url + "/a"), session.get(server.base_url + "/b")
    assert (first.status_code, first.json()) == (400, {"n": 1})
    assert (second.status_code, second.text) == (401, "second")
    assert second.headers["Content-Type"] == "text/plain; charset=utf-8"
    empty = session.get(server.base_url + "/c")
    assert empty.status_code == 500
    assert empty.json() == {"error": {"message": "fakeserver: no scripted response", "type": "server_error"}}
    server.default = sse(["x"], done=True)
    for _ in range(2):  # the default is replayed
        assert sse_events(session.get(server.base_url).content) == [(None, "x"), (None, "[DONE]")]


def test_error_with_headers_keeps_the_connection_alive(server, session):
    server.enqueue(error(429, {"error": {"type": "rate_limit_error"}}, headers={"Retry-After": "1"}),
                   openai_text(["ok"]))
    r = session.post(server.base_url + "/v1/chat/completions", json={})
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "1"
    assert r.headers["Content-Length"] == str(len(r.content))
    assert r.headers["Content-Type"] == "application/json"
    assert session.post(server.base_url + "/v1/chat/completions", json={}).status_code == 200
    assert server.wait_for_responses_finished(2)
    assert server.outcomes == ["complete", "complete"]


def test_requests_are_recorded(server, session):
    server.enqueue(gemini_text(["hi"]), error(204, b""))
    session.post(server.base_url + "/models/gemini-2.0-flash:streamGenerateContent?alt=sse&x=",
                 json={"contents": [{"role": "user"}]}, headers={"X-Goog-Api-Key": "k"}).close()
    session.put(server.base_url + "/raw", data=b"not json").close()
    assert server.wait_for_requests(2)
    first, second = server.requests
    assert first.method == "POST"
    assert first.path == "/models/gemini-2.0-flash:streamGenerateContent"
    assert first.query == {"alt": "sse", "x": ""}
    assert first.headers["x-goog-api-key"] == "k"
    assert first.headers["content-type"] == "application/json"
    assert first.json == {"contents": [{"role": "user"}]}
    assert json.loads(first.body) == first.json
    assert (second.method, second.body, second.json) == ("PUT", b"not json", None)
    assert not server.wait_for_requests(3, timeout=0.01)


@pytest.mark.parametrize("reset", [False, True])
def test_drop_breaks_the_client_read(server, session, reset):
    server.enqueue(openai_text(["a", "b", "c"], drop_after=1, drop=Drop(reset=reset)))
    r = session.post(server.base_url + "/v1/chat/completions", json={}, stream=True)
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)):
        for _ in r.iter_content(None):
            pass
    assert server.wait_for_responses_finished(1)
    assert server.outcomes == ["dropped"]


def test_stall_then_client_close_sets_connection_closed(server, session):
    server.enqueue(openai_text(["a", "b"], stall_after=1))
    r = session.post(server.base_url + "/v1/chat/completions", json={}, stream=True)
    assert server.stalled.wait(2)
    lines = r.iter_lines()  # keep a reference: a collected generator closes the connection
    assert json.loads(next(lines).decode()[len("data: "):])["choices"][0]["delta"]["role"] == "assistant"
    assert not server.connection_closed.is_set()
    r.close()
    assert server.connection_closed.wait(2)
    assert server.wait_for_responses_finished(1)
    assert server.outcomes == ["client_closed"]


def test_stall_released_by_event_sends_the_rest(server, session):
    go = threading.Event()
    server.enqueue(openai_text(["a", "b"], stall_after=1, stall=Stall(go)))
    r = session.post(server.base_url + "/v1/chat/completions", json={}, stream=True)
    assert server.stalled.wait(2)
    go.set()
    events = sse_json(r.content)
    assert "".join(e["choices"][0]["delta"].get("content", "") for _, e in events if e["choices"]) == "ab"
    assert server.wait_for_responses_finished(1) and server.outcomes == ["complete"]


def test_unchunked_response_closes_the_connection(server, session):
    server.enqueue(Response(parts=(b"data: 1\n\n", b"data: 2\n\n"), chunked=False))
    r = session.get(server.base_url, stream=True)
    assert r.headers["Connection"] == "close"
    assert "Transfer-Encoding" not in r.headers and "Content-Length" not in r.headers
    assert r.content == b"data: 1\n\ndata: 2\n\n"


def test_close_joins_every_thread_and_releases_stalls(capfd):
    # The threads alive before, by identity: one an earlier test left to end by itself (an
    # idle on_metrics caller) may end meanwhile, and a count would then come out short.
    before = set(threading.enumerate())
    server = FakeProvider().start()
    sess = requests.Session()
    server.enqueue(error(200, {}), openai_text(["a"], stall_after=0, stall=Stall(timeout=None)),
                   Response(parts=(b"x" * (32 << 20),)))  # a client that never reads this
    assert sess.get(server.base_url).status_code == 200  # leaves an idle keep-alive connection
    stalled = requests.get(server.base_url, stream=True)
    assert server.stalled.wait(2)
    unread = requests.get(server.base_url, stream=True)
    idle = socket.create_connection(server._httpd.server_address)  # connected, never sends
    assert set(threading.enumerate()) - before
    server.close()
    server.close()  # idempotent
    assert [t.name for t in threading.enumerate() if t not in before] == []
    assert server.outcomes[:2] == ["complete", "server_closed"]
    with pytest.raises(requests.exceptions.ConnectionError):
        sess.get(server.base_url, timeout=2)
    for c in (stalled, unread, sess, idle):
        c.close()
    assert capfd.readouterr().err == ""


def test_close_before_start_and_reuse():
    server = FakeProvider()
    server.close()
    with pytest.raises(ValueError):
        server.start()


def test_client_disconnects_print_nothing(server, capfd):
    go = threading.Event()
    server.enqueue(Response(parts=(b"a", Gate(go), b"b" * (1 << 20), b"c")),
                   Response(parts=(b"a", Stall(), b"b")))
    for _ in range(2):
        r = requests.get(server.base_url, stream=True)
        assert r.raw.read(1) == b"a"
        r.raw._connection.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        r.close()  # RST
        go.set()
    assert server.wait_for_responses_finished(2)
    assert server.connection_closed.is_set()
    assert server.outcomes == ["client_closed", "client_closed"]
    assert capfd.readouterr().err == ""


# --------------------------------------------------------------------------- builders
def text_of(events, provider):
    get = {
        "openai": lambda e: "".join(c["delta"].get("content") or "" for c in e["choices"]),
        "mistral": lambda e: "".join(c["delta"].get("content") or "" for c in e["choices"]),
        "anthropic": lambda e: e["delta"]["text"] if e["type"] == "content_block_delta" else "",
        "gemini": lambda e: "".join(p["text"] for p in e["candidates"][0]["content"]["parts"]),
    }[provider]
    return "".join(get(e) for _, e in events)


@pytest.mark.parametrize("provider,build,path", [
    ("openai", lambda p: openai_text(p, usage=True), "/v1/chat/completions"),
    ("mistral", mistral_text, "/v1/chat/completions"),
    ("anthropic", anthropic_text, "/v1/messages"),
    ("gemini", gemini_text, "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"),
])
def test_sse_builders_decode(server, session, provider, build, path):
    pieces = ["Hel", "lo ", "wörld 👋", ""]
    server.enqueue(build(pieces))
    r = session.post(server.base_url + path, json={}, stream=True)
    assert r.headers["Content-Type"] == "text/event-stream"
    chunks = list(r.raw.read_chunked())
    body = b"".join(chunks)
    events = sse_json(body)
    assert text_of(events, provider) == "Hello wörld 👋"
    raw = sse_events(body)
    assert len(chunks) == len(raw)  # one HTTP chunk per SSE event
    assert (raw[-1][1] == "[DONE]") == (provider in ("openai", "mistral"))
    assert body.count(b"\r\n\r\n") == (len(raw) if provider == "gemini" else 0)
    last = events[-1][1]
    if provider == "openai":
        assert events[-2][1]["choices"][0]["finish_reason"] == "stop" and last["choices"] == []
        assert last["usage"]["completion_tokens"] == 4
    elif provider == "mistral":
        assert last["choices"][0]["finish_reason"] == "stop" and last["usage"]["total_tokens"] == 14
    elif provider == "anthropic":
        assert [n for n, _ in raw] == ["message_start", "content_block_start", "ping"] + [
            "content_block_delta"] * 4 + ["content_block_stop", "message_delta", "message_stop"]
        assert events[-2][1]["delta"]["stop_reason"] == "end_turn"
    else:
        assert last["candidates"][0]["finishReason"] == "STOP"
        assert "finishReason" not in events[0][1]["candidates"][0]


def test_ollama_builder_is_ndjson(server, session):
    server.enqueue(ollama_text(["Why", " not"]))
    r = session.post(server.base_url + "/api/chat", json={}, stream=True)
    assert r.headers["Content-Type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in r.iter_lines()]
    assert "".join(x["message"]["content"] for x in lines) == "Why not"
    assert [x["done"] for x in lines] == [False, False, True]
    assert lines[-1]["done_reason"] == "stop" and lines[-1]["eval_count"] == 2


def test_sse_builder_shapes():
    parts = sse(["a\nb", {"k": 1}, ("ping", {"type": "ping"}), b": comment\n\n"], done=True).parts
    assert parts == (b"data: a\ndata: b\n\n", b'data: {"k":1}\n\n', b'event: ping\ndata: {"type":"ping"}\n\n',
                     b": comment\n\n", b"data: [DONE]\n\n")


@pytest.mark.parametrize("build", [openai_text, mistral_text, anthropic_text, gemini_text, ollama_text])
def test_fault_injection_kwargs(build):
    full = build(["a", "b", "c"]).parts
    dropped = build(["a", "b", "c"], drop_after=2).parts
    stalled = build(["a", "b", "c"], stall_after=0).parts
    assert isinstance(dropped[-1], Drop) and not any(isinstance(p, Drop) for p in full)
    assert sum(isinstance(p, Stall) for p in stalled) == 1 and len(stalled) == len(full) + 1
    assert b"".join(p for p in stalled if isinstance(p, bytes)) == b"".join(full)
    with pytest.raises(ValueError):
        build(["a"], drop_after=2)


def key_paths(obj, prefix=""):
    """Ordered key layout of a JSON value (list items merged), to compare shapes, not values."""
    if isinstance(obj, dict):
        return [(prefix + "." + k, type(v).__name__) for k, v in obj.items()] + [
            kp for k, v in obj.items() for kp in key_paths(v, prefix + "." + k)]
    if isinstance(obj, list) and obj:
        return key_paths(obj[0], prefix + "[]")
    return []


@pytest.mark.parametrize("name,build,indices", [
    # indices of corresponding events: first, a piece, finish/usage/end events
    ("openai/chat_text_with_usage.raw", lambda: openai_text(["I'm", " unable"], usage=True), (0, 1, -3, -2, -1)),
    ("mistral/short_text.raw", lambda: mistral_text(["France", " won"]), (0, 1, -2, -1)),
    ("anthropic/short_answer_with_ping.raw", lambda: anthropic_text(["2"]), range(7)),
    ("gemini/simple_text.raw", lambda: gemini_text(["The", " capital"]), (0, -1)),
])
def test_builders_match_the_recorded_layout(name, build, indices):
    with open(conformance_file(name), "rb") as f:
        rec = sse_events(f.read())
    ours = b"".join(p for p in build().parts if isinstance(p, bytes))
    assert (b"\r\n" in ours) == name.startswith("gemini")
    got = sse_events(ours)
    if name.startswith("anthropic"):
        assert len(got) == len(rec)
    for i in indices:
        assert got[i][0] == rec[i][0]  # event: line
        if rec[i][1] == "[DONE]":
            assert got[i][1] == "[DONE]"
        else:
            assert key_paths(json.loads(got[i][1])) == key_paths(json.loads(rec[i][1])), i


def test_ollama_builder_matches_the_recorded_layout():
    with open(conformance_file("ollama/chat_llama3_joke.raw"), "rb") as f:
        rec = [json.loads(line) for line in f.read().splitlines()]
    got = [json.loads(line) for p in ollama_text(["Why", " did"]).parts for line in p.splitlines()]
    assert key_paths(got[0]) == key_paths(rec[0]) and key_paths(got[-1]) == key_paths(rec[-1])


def test_raw_file_split_is_deterministic(server, session):
    path = conformance_file("openai/chat_text_with_usage.raw")
    with open(path, "rb") as f:
        data = f.read()
    a, b = raw_file(path, split=(1, 17), seed=3), raw_file(data, split=(1, 17), seed=3)
    assert a == b and b"".join(a.parts) == data
    assert all(1 <= len(p) <= 17 for p in a.parts) and len(a.parts) > len(data) // 17
    assert raw_file(data, split=(1, 17), seed=4).parts != a.parts
    assert raw_file(data).parts == (data,) and a.content_type == "text/event-stream"
    assert raw_file(b'{"a":1}\n').content_type == "application/x-ndjson"
    server.enqueue(a)
    r = session.get(server.base_url, stream=True)
    assert list(r.raw.read_chunked()) == list(a.parts)
