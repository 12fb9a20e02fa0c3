"""A flood with recovery on, over real loopback HTTP: text deltas wait for their store write
as columns of strings (``TextRun``) and become ``Chunk`` objects only as the consumer reads
them. The consumer still gets every chunk, in order, with every field, never before the
store holds its text; and the chunks waiting for the store are not objects the garbage
collector has to track."""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import time

import pytest

import streamcoord
import streamcoord._read_loop
from adapters.openai import OpenAIAdapter, OpenAIParser
from recovery_store import MemoryStore
from streamcoord import Chunk
from streamcoord._chunk import RawJSON
from tests.conftest import API_KEY
from tests.support.fakeserver import Drop, Response, anthropic_text, openai_text, sse

MESSAGES = [{"role": "user", "content": "Count."}]
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-5", "mistral": "mistral-small-latest"}
FLOOD = [f" w{i}" for i in range(3000)]


def openai_mixed(pieces):
    """Text deltas with other chunks among them, so reads mix both: reasoning deltas and a
    second choice's text (n=2) every so often, then the finish, usage and [DONE]."""
    def event(delta, index=0, finish=None, **extra):
        return dict({"id": "c-1", "object": "chat.completion.chunk", "model": "gpt-4o-mini",
                     "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}, **extra)

    events = [event({"role": "assistant", "content": ""})]
    for i, piece in enumerate(pieces):
        if i % 50 == 7:
            events.append(event({"reasoning_content": f"think{i}"}))
        if i % 37 == 5:
            events.append(event({"content": f"other{i}"}, index=1))
        events.append(event({"content": piece}))
    events += [event({}, finish="stop"), dict(event({}), choices=[], usage={"prompt_tokens": 3, "completion_tokens": 9,
                                                                          "total_tokens": 12})]
    return whole(sse(events, done=True))


def anthropic_thinking(pieces):
    """Extended thinking: a thinking block, then the text block, as Claude streams them."""
    def block(index, kind, deltas):
        start = {"type": "content_block_start", "index": index, "content_block": {"type": kind, kind: ""}}
        key = "thinking_delta" if kind == "thinking" else "text_delta"
        return ([("content_block_start", start)]
                + [("content_block_delta", {"type": "content_block_delta", "index": index,
                                            "delta": {"type": key, kind: d}}) for d in deltas]
                + [("content_block_stop", {"type": "content_block_stop", "index": index})])

    start = {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                                                  "model": "claude-sonnet-4-5", "content": [],
                                                  "usage": {"input_tokens": 3, "output_tokens": 1}}}
    end = [("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                              "usage": {"output_tokens": 9}}), ("message_stop", {"type": "message_stop"})]
    return whole(sse([("message_start", start)] + block(0, "thinking", [f"t{i} " for i in range(200)])
                     + block(1, "text", pieces) + end))


def whole(response):
    """The body in one part: reads full of events, text deltas and others in the same read."""
    return Response(parts=(b"".join(response.parts),))


BUILDERS = {"openai": openai_text, "anthropic": anthropic_text, "mistral": openai_text,
            "openai-mixed": openai_mixed, "anthropic-thinking": anthropic_thinking}
PROVIDER = {"openai-mixed": "openai", "anthropic-thinking": "anthropic"}


@pytest.fixture
def store():
    with MemoryStore() as memory:
        yield memory


def stream_of(client, provider, on, store=None, stream_id="hold-1", **options):
    kwargs = {"recovery_store": store or MemoryStore()} if on else {}
    return client(provider, max_retries=0, **kwargs).stream_chat(
        MESSAGES, model=MODELS[provider], stream_recovery=on, stream_id=stream_id, **options)


def fields(chunks):
    return [(c, c.raw) for c in chunks]  # Chunk equality leaves raw out


@pytest.mark.parametrize("body", sorted(BUILDERS))
def test_a_flood_gives_the_same_chunks_with_recovery_on_as_off(server, client, body):
    seen = {}
    for recovery in (False, True):
        server.enqueue(BUILDERS[body](FLOOD))
        stream = stream_of(client, PROVIDER.get(body, body), recovery)
        chunks = list(stream)
        seen[recovery] = (fields(chunks), stream.text, stream.model, stream.finish_reason, stream.usage,
                          stream.reasoning)
    assert seen[True] == seen[False]
    assert seen[True][1] == "".join(FLOOD)
    assert [c.index for c, _ in seen[True][0]] == list(range(len(seen[True][0])))


class SlowStore(MemoryStore):
    """Each append takes 20 ms and counts its characters only once it has returned: a hand
    over that does not wait for its write is seen by the consumer while it is going on."""

    def __init__(self):
        super().__init__()
        self.written = 0

    def append(self, stream_id, text, **kwargs):
        time.sleep(0.02)
        super().append(stream_id, text, **kwargs)
        self.written += len(text)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_no_chunk_of_a_flood_reaches_the_consumer_before_its_store_write_returned(server, client, provider):
    body = BUILDERS[provider](FLOOD)
    # Several HTTP chunks of 300 events: several slices, each handed over after its write.
    server.enqueue(Response(parts=tuple(b"".join(body.parts[i:i + 300]) for i in range(0, len(body.parts), 300))))
    store = SlowStore()
    stream = stream_of(client, provider, True, store, recovery={"keep": True})
    shown = 0
    behind = []
    for chunk in stream:
        shown += len(chunk.content)
        if store.written < shown:
            behind.append(chunk.index)
    assert behind == []
    assert stream.text == store.load("hold-1").text == "".join(FLOOD)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_flood_with_recovery_on_keeps_no_tracked_objects_per_chunk_waiting(server, client, provider):
    # Held Chunk objects (hundreds per store write) are what made the garbage collector
    # promote them and run full collections (TextRun's docstring); a run holds strings.
    def alive():  # tracked objects that stand for a chunk: the Chunk, the raw event's text
        return sum(1 for o in gc.get_objects() if type(o) is Chunk or type(o) is RawJSON)

    server.enqueue(BUILDERS[provider](FLOOD))
    stream = stream_of(client, provider, True)
    gc.collect()
    before = alive()  # what earlier tests left (a failure's traceback keeps its chunks)
    most = 0
    text = []
    for n, chunk in enumerate(stream):
        text.append(chunk.content)
        if n % 300 == 150:
            most = max(most, alive() - before)
    assert "".join(text) == "".join(FLOOD)
    assert most < 16, f"{most} Chunk and RawJSON objects alive at once"


def test_text_deltas_before_a_broken_event_in_the_same_read_reach_the_consumer_in_order(server, client):
    # Reads after the first bring text deltas only (held as a run), the last one the event
    # that does not parse.
    body = openai_text(FLOOD[:1000], finish_reason=None, done=False)
    server.enqueue(Response(parts=(b"".join(body.parts) + b"data: {not json\n\n",)))
    stream = stream_of(client, "openai", True)
    got = []
    with pytest.raises(streamcoord.ProtocolError):
        for chunk in stream:
            got.append(chunk)
    assert "".join(c.content for c in got) == "".join(FLOOD[:1000]) == stream.text
    assert [c.index for c in got] == list(range(len(got)))


def test_a_drop_after_a_flood_keeps_every_chunk_and_continues_after_them(server, client, store):
    first = openai_text(FLOOD, finish_reason=None, done=False)
    rest = openai_text([" end."])
    server.enqueue(Response(parts=first.parts + (Drop(),)), rest)
    stream = stream_of(client, "openai", True, store, recovery={"strategy": "exact"})
    chunks = list(stream)
    assert "".join(c.content for c in chunks) == stream.text == "".join(FLOOD) + " end."
    assert stream.metrics.recoveries == 1
    continuation = json.loads(server.requests[1].body)
    assert {"role": "assistant", "content": "".join(FLOOD)} in continuation["messages"]


def test_mistral_drops_its_echo_of_the_kept_text_with_recovery_on(server, client, store):
    # Mistral's parser looks at what it parsed (the echo of a continuation's prefix): it
    # gets Chunk objects, never a run, and the echo is still dropped.
    first = openai_text(FLOOD[:50], finish_reason=None, done=False)
    echo = openai_text(FLOOD[:50] + [" end."])
    server.enqueue(Response(parts=first.parts + (Drop(),)), echo)
    stream = stream_of(client, "mistral", True, store, recovery={"strategy": "exact"})
    assert "".join(c.content for c in stream) == stream.text == "".join(FLOOD[:50]) + " end."


class CountingStore(MemoryStore):
    def __init__(self):
        super().__init__()
        self.appends = 0

    def append(self, stream_id, text, **kwargs):
        self.appends += 1
        super().append(stream_id, text, **kwargs)


def test_a_flood_is_written_in_fewer_writes_than_it_has_reads(server, client):
    # One write per time slice, not per network read (ReadLoop._read): the body below is
    # at least len/READ_SIZE reads.
    body = whole(openai_text(FLOOD))
    server.enqueue(body)
    store = CountingStore()
    stream = stream_of(client, "openai", True, store)
    assert "".join(c.content for c in stream) == "".join(FLOOD)
    reads = len(body.parts[0]) // streamcoord._read_loop.READ_SIZE
    assert reads >= 30
    assert 1 <= store.appends <= reads // 2, (store.appends, reads)


class UpperParser(OpenAIParser):
    """A parser with a parse_into of its own that changes what the one it extends appended."""

    def parse_into(self, events, out):
        start = len(out)
        super().parse_into(events, out)
        out[start:] = [dataclasses.replace(c, content=c.content.upper()) for c in out[start:]]


class UpperAdapter(OpenAIAdapter):
    def new_parser(self, request):
        return UpperParser(self.name)


class WrappedAdapter(OpenAIAdapter):
    """A parse_into wrapper set on the parser instance (a redaction, a spy)."""

    def new_parser(self, request):
        parser = OpenAIParser(self.name)
        inner = parser.parse_into

        def parse_into(events, out):
            start = len(out)
            inner(events, out)
            out[start:] = [dataclasses.replace(c, content=c.content.upper()) for c in out[start:]]

        parser.parse_into = parse_into
        return parser


@pytest.mark.parametrize("adapter", [UpperAdapter, WrappedAdapter], ids=["subclass", "instance-wrapper"])
def test_a_parse_into_of_its_own_sees_every_chunk_with_recovery_on(server, adapter):
    server.enqueue(whole(openai_text(FLOOD)))
    client = streamcoord.Client(adapter(), api_key=API_KEY, base_url=server.base_url + "/v1", max_retries=0,
                                recovery_store=MemoryStore())
    stream = client.stream_chat(MESSAGES, model="m", stream_recovery=True)
    assert "".join(c.content for c in stream) == stream.text == "".join(FLOOD).upper()


def test_a_recovering_flood_dropped_while_read_warns_of_no_lost_lease(server, client, caplog):
    # Closing gives the stream's lease up first; the worker's next write is then refused,
    # which once read as another producer having taken the stream over (a WARNING in the
    # user's log, about 1 time in 5 like this).
    caplog.set_level(logging.WARNING, logger="streamcoord")
    for _ in range(8):
        body = openai_text(FLOOD * 10)
        server.enqueue(Response(parts=tuple(b"".join(body.parts[i:i + 50]) for i in range(0, len(body.parts), 50))))
        stream = stream_of(client, "openai", True)
        it = iter(stream)
        for n, _chunk in enumerate(it):
            if n == 5000:
                break
        thread = stream._worker.thread
        del it, stream, _chunk
        gc.collect()
        thread.join(5)
        assert not thread.is_alive()
    assert [r.getMessage() for r in caplog.records] == []
