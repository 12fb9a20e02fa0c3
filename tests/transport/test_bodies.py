"""Every body shape a real server or proxy sends: what the user gets is the whole answer,
or the documented error at once, never a wait for the idle timeout."""

from __future__ import annotations

import io
import threading
import time

import pytest
import requests
import requests.adapters

import streamcoord
from tests.conftest import MESSAGES
from tests.support.rawserver import (
    LAST_CHUNK,
    READ,
    Close,
    Send,
    Stall,
    chunk,
    deflated,
    gzipped,
    head,
    openai_events,
    sse_body,
)
from tests.transport._support import client_for, read_all

WORDS = ["Hel", "lo", ", wor", "ld"]
TEXT = "".join(WORDS)
BODY = sse_body(WORDS)


def pieces(data: bytes, size: int):
    return [data[i:i + size] for i in range(0, len(data), size)]


def encoded(encoding: str) -> bytes:
    if encoding == "gzip":
        return gzipped(BODY)
    if encoding == "gzip, two members":
        half = len(BODY) // 2
        return gzipped(BODY[:half]) + gzipped(BODY[half:])
    return deflated(BODY, raw=encoding == "raw deflate")


ENCODINGS = ["gzip", "gzip, two members", "deflate", "raw deflate"]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_compressed_chunked_body_is_read_whole_and_once(clean, raw, session, encoding):
    data = encoded(encoding)
    header = "gzip" if encoding.startswith("gzip") else "deflate"
    raw.script(READ, Send(head(chunked=True, headers={"Content-Encoding": header})
                          + b"".join(chunk(p) for p in pieces(data, 7)) + LAST_CHUNK), Close())
    assert read_all(client_for(raw.base_url, session, retries=2)) == TEXT
    assert len(raw.connections) == 1  # not retried
    assert "gzip" in raw.connections[0].requests[0].headers["accept-encoding"]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_compressed_content_length_body_is_read_whole(clean, raw, session, encoding):
    data = encoded(encoding)
    header = "gzip" if encoding.startswith("gzip") else "deflate"
    raw.script(READ, Send(head(length=len(data), headers={"Content-Encoding": header}) + data), Close())
    assert read_all(client_for(raw.base_url, session)) == TEXT


def test_compressed_error_body_reaches_on_error_decoded(clean, raw, session):
    data = gzipped(b'{"error": {"message": "bad model", "type": "invalid_request_error"}}')
    raw.script(READ, Send(head(400, {"Content-Encoding": "gzip"}, length=len(data), content_type="application/json")
                          + data), Close())
    seen = []
    with pytest.raises(streamcoord.APIError, match="bad model"):
        read_all(client_for(raw.base_url, session), on_error=lambda status, body: seen.append((status, body)))
    assert seen == [(400, {"error": {"message": "bad model", "type": "invalid_request_error"}})]


def test_body_in_an_encoding_we_did_not_ask_for_is_a_protocol_error_at_once(clean, raw, session):
    raw.script(READ, Send(head(chunked=True, headers={"Content-Encoding": "compress"}) + chunk(BODY) + LAST_CHUNK), Close())
    with pytest.raises(streamcoord.ProtocolError, match="compress"):
        read_all(client_for(raw.base_url, session, retries=2))
    assert len(raw.connections) == 1


def test_corrupt_gzip_body_is_a_protocol_error(clean, raw, session):
    data = bytearray(gzipped(BODY))
    data[20:30] = b"\xff" * 10
    raw.script(READ, Send(head(length=len(data), headers={"Content-Encoding": "gzip"}) + bytes(data)), Close())
    with pytest.raises(streamcoord.ProtocolError, match="gzip"):
        read_all(client_for(raw.base_url, session))


def test_empty_content_length_body_ends_at_once_instead_of_waiting_the_idle_timeout(clean, raw, session):
    raw.script(READ, Send(head(length=0)), Close())
    started = time.monotonic()
    with pytest.raises(streamcoord.ConnectionLost, match="ended before"):
        read_all(client_for(raw.base_url, session), timeout=30)
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("version", ["HTTP/1.0", "HTTP/1.1"])
def test_body_delimited_by_the_connection_closing_is_complete(clean, raw, session, version):
    raw.script(READ, Send(head(version=version, headers={"Connection": "close"}) + BODY), Close())
    assert read_all(client_for(raw.base_url, session)) == TEXT


def test_http10_answer_with_content_length_is_complete(clean, raw, session):
    raw.script(READ, Send(head(version="HTTP/1.0", length=len(BODY)) + BODY), Close())
    assert read_all(client_for(raw.base_url, session)) == TEXT


def test_chunk_extensions_and_trailers_are_accepted(clean, raw, session):
    events = openai_events(WORDS)
    body = b"".join(chunk(e, b";name=value ;x") for e in events)
    raw.script(READ, Send(head(chunked=True) + body + b"0;last\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n"), Close())
    assert read_all(client_for(raw.base_url, session)) == TEXT


def test_endless_trailers_after_a_complete_answer_do_not_hang_the_stream(clean, raw, session):
    # No [DONE]: the answer is complete at its finish_reason, then the server sends
    # trailer lines for ever (here: far more than any limit).
    events = openai_events(WORDS)[:-1] + [openai_events([])[-1].split(b"data: [DONE]")[0]]
    trailers = b"".join(b"X-Trailer-%d: %s\r\n" % (i, b"v" * 50) for i in range(2000))
    raw.script(READ, Send(head(chunked=True) + b"".join(chunk(e) for e in events) + b"0\r\n" + trailers), Stall(), Close())
    started = time.monotonic()
    assert read_all(client_for(raw.base_url, session), timeout=30) == TEXT
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("size", [b"0x5", b"+5", b"0_5", b" 5", b"-5", b"5 5", b"g"])
def test_malformed_chunk_size_is_a_protocol_error(clean, raw, session, size):
    raw.script(READ, Send(head(chunked=True) + size + b"\r\nhello\r\n" + LAST_CHUNK), Close())
    with pytest.raises(streamcoord.ProtocolError, match="chunk size"):
        read_all(client_for(raw.base_url, session))


def test_body_cut_inside_a_chunk_is_connection_lost(clean, raw, session):
    raw.script(READ, Send(head(chunked=True) + b"100\r\n" + BODY[:40]), Close())
    with pytest.raises(streamcoord.ConnectionLost):
        read_all(client_for(raw.base_url, session))


class _ReplayAdapter(requests.adapters.BaseAdapter):
    """An adapter that is not urllib3's (as test doubles and some SDK wrappers are): the
    body is a plain file object, gzip-compressed."""

    def send(self, request, **kwargs):
        response = requests.Response()
        response.status_code = 200
        response.headers["Content-Type"] = "text/event-stream"
        response.headers["Content-Encoding"] = "gzip"
        response.raw = io.BytesIO(gzipped(BODY))
        response.request = request
        return response

    def close(self):
        pass


def test_a_compressed_body_from_an_adapter_that_is_not_urllib3s_is_decoded(clean):
    session = requests.Session()
    session.mount("http://", _ReplayAdapter())
    assert read_all(client_for("http://replay.invalid", session)) == TEXT


@pytest.mark.parametrize("framing", ["chunked", "Content-Length"])
def test_a_long_gzip_answer_comes_whole_in_bounded_pieces(clean, raw, session, framing):
    # 3000 events compress to a few KiB: each read hands over at most a read's worth of
    # decoded text, the rest on the next reads, and the end only after all of it.
    words = [f" w{i}" for i in range(3000)]
    data = gzipped(sse_body(words))
    if framing == "chunked":
        body = head(chunked=True, headers={"Content-Encoding": "gzip"}) + b"".join(chunk(p) for p in pieces(data, 4096))
        body += LAST_CHUNK
    else:
        body = head(length=len(data), headers={"Content-Encoding": "gzip"}) + data
    raw.script(READ, Send(body), Close())
    batches = []
    with client_for(raw.base_url, session).stream_chat(MESSAGES, model="m") as stream:
        for batch in stream.batches():
            batches.append(len(batch))
        assert stream.text == "".join(words)
    assert len(batches) > 10  # not one batch of 3000 chunks


def test_events_paced_one_by_one_then_a_large_one_arrive_whole(clean, raw, session):
    # A paced stream (one small event per read), then an event far larger than any read,
    # then small ones again: the reads shrink to the events' size while the stream waits
    # and grow back for the large one; the text is the same whole.
    words = ["a"] * 6 + ["x" * 100_000] + ["b", "c", "d"]
    events = openai_events(words)
    gates = [threading.Event() for _ in events]
    script = [READ, Send(head(chunked=True) + chunk(events[0]))]
    for gate, event in zip(gates, events[1:]):
        script += [Stall(gate), Send(chunk(event))]
    raw.script(*script, Send(LAST_CHUNK), Close())
    got = []
    with client_for(raw.base_url, session).stream_chat(MESSAGES, model="m", timeout=30) as stream:
        for piece in stream:
            got.append(piece.content)
            gates[len(got) - 1].set()  # the server sends the next event only now
        text = stream.text
    assert text == "".join(words)
    assert [content for content in got if content] == words
