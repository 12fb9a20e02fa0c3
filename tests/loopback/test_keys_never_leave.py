"""No API key ever leaves in anything a user can see: not in errors (message, args, body,
cause chain, formatted traceback), not in the body given to ``on_error``, not in any log
record of any logger, not in reprs, not in the recovery store's files, even when a server
echoes the key back (some proxies do, and so does a model asked to).

Every logger is captured at DEBUG by a handler on the root logger, and each record is
searched as its message and as a formatted line with its traceback."""

from __future__ import annotations

import logging
import pathlib
import re
import threading
import traceback

import pytest
import requests

import streamcoord
from recovery_store import DiskStore, MemoryStore
from streamcoord import StreamingCoordinator
from tests.conftest import MESSAGES
from tests.support.fakeserver import Drop, Gate, Response, anthropic_text, error, openai_text, sse

KEY = "sk-live-LEAKCHECK-7f3a9c2e1d5b"


@pytest.fixture
def records():
    """Every record of every logger, at DEBUG."""
    kept = []

    class Keep(logging.Handler):
        def emit(self, record):
            kept.append(record)

    handler = Keep(logging.DEBUG)
    root, ours = logging.getLogger(), logging.getLogger("streamcoord")
    levels = root.level, ours.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    ours.setLevel(logging.DEBUG)
    yield kept
    root.removeHandler(handler)
    root.setLevel(levels[0])
    ours.setLevel(levels[1])


def _chain(exc):
    seen = []
    todo = [exc]
    while todo:
        current = todo.pop()
        if current is None or any(current is s for s in seen):
            continue
        seen.append(current)
        todo += [current.__cause__, current.__context__]
        todo += [a for a in current.args if isinstance(a, BaseException)]
        todo += [v for v in vars(current).values() if isinstance(v, BaseException)]
    return seen


def _texts(exc=None, records=(), extra=()):
    """Everything the user could look at, as text."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    texts = []
    if exc is not None:
        texts.append("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        for e in _chain(exc):
            texts += [str(e), repr(e), repr(e.args), repr(vars(e)) if hasattr(e, "__dict__") else ""]
    for record in records:
        texts += [record.getMessage(), formatter.format(record)]
    texts += [x if isinstance(x, str) else repr(x) for x in extra]
    return texts


def assert_no_key(exc=None, records=(), extra=()):
    leaks = [text[:300] for text in _texts(exc, records, extra) if KEY in text]
    assert leaks == [], leaks


def _run(stream):
    with pytest.raises(streamcoord.StreamcoordError) as info:
        for _ in stream:
            pass
    return info.value


def test_a_key_echoed_in_a_401_body_is_scrubbed_from_the_error_the_callback_and_the_log(server, client, records):
    echoed = {"error": {"message": f"Incorrect API key provided: {KEY}", "type": "invalid_request_error"}}
    server.enqueue(error(401, echoed))
    bodies = []
    c = client("openai", api_key=KEY)
    stream = c.stream_chat(MESSAGES, model="m", on_error=lambda status, body: bodies.append((status, body)))
    exc = _run(stream)
    assert isinstance(exc, streamcoord.AuthenticationError)
    assert exc.body == {"error": {"message": "Incorrect API key provided: ***", "type": "invalid_request_error"}}
    assert "Incorrect API key provided: ***" in str(exc)
    assert bodies == [(401, exc.body)]
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"  # the real key went out
    assert any("stream failed" in r.getMessage() for r in records)  # the error was logged, scrubbed
    request = c.adapter.build_request(MESSAGES, {"model": "m"}, base_url=c.base_url, api_key=KEY)
    assert_no_key(exc, records, [c, request, stream, stream.metrics, bodies])


def test_a_key_echoed_by_a_failing_server_is_scrubbed_across_every_retry(server, client, sleeps, records):
    server.enqueue(*[error(500, f"upstream rejected x-api-key {KEY}")] * 3)
    c = client("anthropic", api_key=KEY)
    exc = _run(c.stream_chat(MESSAGES, model="m", max_tokens=10))
    assert isinstance(exc, streamcoord.ServerError) and exc.body == "upstream rejected x-api-key ***"
    assert len(server.requests) == 3 and len(sleeps) == 2
    assert [r for r in records if "retrying" in r.getMessage()]  # each retry was logged, scrubbed
    assert_no_key(exc, records, [c])


def test_a_key_echoed_in_an_error_event_mid_stream_is_scrubbed(server, client, records):
    event = {"type": "error", "error": {"type": "invalid_request_error", "message": f"bad key {KEY}"}}
    broken = anthropic_text(["Hello ", "world"], drop_after=1)
    server.enqueue(sse([*broken.parts[:-1], ("error", event)]))
    bodies = []
    stream = client("anthropic", api_key=KEY).stream_chat(
        MESSAGES, model="m", max_tokens=10, on_error=lambda status, body: bodies.append(body)
    )
    exc = _run(stream)
    assert isinstance(exc, streamcoord.APIError) and exc.body["error"]["message"] == "bad key ***"
    assert stream.text == "Hello "
    assert bodies == [exc.body]
    assert_no_key(exc, records, [bodies])


def test_a_header_value_requests_refuses_is_our_error_without_the_key(server, client, records):
    session = requests.Session()
    session.headers["X-Debug-Key"] = f"{KEY}\n"  # a header requests will not send
    c = client("openai", api_key=KEY, session=session)
    exc = _run(c.stream_chat(MESSAGES, model="m"))
    assert isinstance(exc, streamcoord.StreamcoordError)
    assert exc.__cause__ is not None  # what went wrong is still there to read, scrubbed
    assert server.requests == []
    assert_no_key(exc, records, [c])


@pytest.mark.parametrize("cut", [5, 15, 29], ids=["after 5 characters", "in the middle", "before the last"])
def test_a_key_the_model_repeats_is_never_written_to_the_recovery_store(server, client, tmp_path, records, cut):
    directory = tmp_path / "store"
    # A model repeats a key token by token: here in two pieces, the second sent only once
    # the consumer has the first (so they are two writes to the store). The record is kept,
    # so everything the stream wrote is still in the store's files.
    second_half = threading.Event()
    server.enqueue(openai_text(["Your key is ", KEY[:cut], KEY[cut:], ". Done."], stall_after=2,
                               stall=Gate(second_half)))
    with DiskStore(directory) as store:
        c = client("openai", api_key=KEY, recovery_store=store)
        messages = [{"role": "user", "content": f"Repeat my key {KEY}"}]
        # Closed by the with block, which waits for the worker: its thread's store
        # connection is closed with it, so the files read below no longer change (CI, py39:
        # the worker's last connection closed while they were read, and the log vanished).
        with c.stream_chat(messages, model="m", stream_recovery=True, recovery={"keep": True},
                           stream_id="echo-1") as stream:
            for _ in stream:
                if stream.text.endswith(KEY[:cut]):
                    second_half.set()
        assert stream.text == f"Your key is {KEY}. Done."  # what the model said reaches the user
        record = store.load("echo-1")
    assert record.text == "Your key is ***. Done."
    assert record.meta["messages"] == [{"role": "user", "content": "Repeat my key ***"}]
    stored = b"".join(p.read_bytes() for p in pathlib.Path(directory).rglob("*") if p.is_file())
    pieces = [piece.encode() for piece in (KEY[:cut], KEY[cut:]) if len(piece) >= 5]
    assert [piece for piece in pieces if piece in stored] == []  # not even in deleted rows
    assert_no_key(None, records, [record])


def test_a_key_the_model_repeats_across_a_recovery_is_never_written_to_the_recovery_store(server, client, tmp_path):
    first = openai_text(["Your key is ", KEY[:12]], finish_reason=None, done=False)
    server.enqueue(Response(parts=first.parts + (Drop(),)), openai_text([KEY[12:], ". Done."]))
    with DiskStore(tmp_path / "store") as store:
        c = client("openai", api_key=KEY, recovery_store=store)
        stream = c.stream_chat(MESSAGES, model="m", stream_recovery=True,
                               recovery={"strategy": "exact", "keep": True}, stream_id="echo-2")
        assert "".join(chunk.content for chunk in stream) == f"Your key is {KEY}. Done."
        assert store.load("echo-2").text == "Your key is ***. Done."
    assert b"LEAKCHECK" not in b"".join(p.read_bytes() for p in (tmp_path / "store").rglob("*") if p.is_file())


@pytest.mark.parametrize("headers", [{"Authorization": f"Bearer {KEY}"}, {"X-Gateway-Token": KEY}])
def test_the_direct_api_scrubs_the_keys_its_headers_carry(server, records, headers):
    server.enqueue(error(403, {"error": {"message": f"key {KEY} may not do this"}}))
    bodies = []
    handle = StreamingCoordinator.start_stream(
        server.base_url + "/custom", {"q": 1}, headers, lambda chunk: None,
        parse_chunk_fn=lambda data: None, on_error=lambda status, body: bodies.append(body), max_retries=0,
    )
    assert handle.join(10)
    assert isinstance(handle.error, streamcoord.AuthenticationError)
    assert bodies == [{"error": {"message": "key *** may not do this"}}]
    assert_no_key(handle.error, records, [handle, handle.metrics, bodies])


def _logger_names():
    root = pathlib.Path(streamcoord.__file__).resolve().parents[1]
    sources = [p.read_text(encoding="utf-8") for d in ("streamcoord", "recovery_store", "adapters")
               for p in (root / d).glob("*.py")]
    return sorted({name for text in sources for name in re.findall(r"getLogger\(\"(streamcoord[\w.]*)\"\)", text)})


@pytest.mark.parametrize("name", _logger_names())
def test_every_logger_the_library_uses_scrubs_the_keys_of_live_streams(client, records, name):
    stream = client("openai", api_key=KEY).stream_chat(MESSAGES, model="m")  # alive, not started
    logging.getLogger(name).warning("upstream said %s", {"key": KEY})
    assert [r.getMessage() for r in records if r.name == name] == ["upstream said {'key': '***'}"]
    stream.close()


def test_a_password_in_base_url_is_scrubbed_and_left_out_of_the_clients_repr(server, client, records):
    password = "pw-LEAKCHECK-base-url"
    base_url = server.base_url.replace("http://", f"http://gateway:{password}@") + "/v1"
    server.enqueue(error(407, f"gateway refused gateway:{password}"))
    c = client("openai", api_key=KEY, base_url=base_url)
    exc = _run(c.stream_chat(MESSAGES, model="m"))
    assert isinstance(exc, streamcoord.APIError) and exc.body == "gateway refused gateway:***"
    assert "gateway:***@" in repr(c)
    leaks = [text[:300] for text in _texts(exc, records, [c]) if password in text]
    assert leaks == [], leaks


def test_an_ordinary_header_value_stays_in_the_stored_answer_and_its_resume(server, client):
    # "key" in a header's name makes its value redacted where headers are shown, not a
    # secret to cut out of what the model said.
    server.enqueue(openai_text(["The weather in Paris ", "is sunny."]))
    store = MemoryStore()
    c = client("openai", api_key=KEY, recovery_store=store)
    stream = c.stream_chat(MESSAGES, model="m", extra_headers={"X-Cache-Key": "weather"}, stream_recovery=True,
                           recovery={"keep": True}, stream_id="plain-header")
    assert "".join(chunk.content for chunk in stream) == "The weather in Paris is sunny."
    assert store.load("plain-header").text == "The weather in Paris is sunny."
    assert "".join(chunk.content for chunk in c.resume("plain-header")) == "The weather in Paris is sunny."
    assert server.requests[0].headers["x-cache-key"] == "weather"


def test_a_gateway_key_in_a_header_secret_by_name_is_scrubbed_from_the_error_and_the_log(server, client, records):
    server.enqueue(error(403, {"error": {"message": f"gateway key {KEY} may not do this"}}))
    stream = client("openai", api_key="sk-other-key-1234").stream_chat(
        MESSAGES, model="m", extra_headers={"X-Gateway-Token": KEY})
    exc = _run(stream)
    assert isinstance(exc, streamcoord.AuthenticationError)
    assert exc.body == {"error": {"message": "gateway key *** may not do this"}}
    assert_no_key(exc, records, [stream])
