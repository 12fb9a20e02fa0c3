"""``stream.events()`` over loopback HTTP, for every provider: text, reasoning, tool calls
(parallel, in many fragments, with arguments that grow while they stream), recovered
streams (a rewind, and tool calls that start over), malformed arguments, and ``break``.

A UI's view is rebuilt from the events alone (``view``): a ``Rewind`` drops the last
characters shown, a ``TextDelta`` appends.
"""

from __future__ import annotations

import json

import pytest

from recovery_store import MemoryStore
from streamcoord.events import Done, ReasoningDelta, Rewind, TextDelta, ToolCallDelta, ToolCallDone
from tests.loopback.test_recovery_answer import MODELS, PARTS, PROVIDERS, REASONING, TEXT, cut_after, response
from tests.support.fakeserver import Stall, anthropic_text, gemini_text, mistral_text, ollama_text, openai_text, sse

MESSAGES = [{"role": "user", "content": "What is the weather in Paris and in Rome?"}]
CALLS = [("call_a", "get_weather", {"city": "Paris", "days": [1, 2], "unit": "celsius"}),
         ("call_b", "get_time", {"zone": "Europe/Rome", "format": "24h"})]
TEXT_BUILDERS = {"openai": openai_text, "anthropic": anthropic_text, "gemini": gemini_text,
                 "ollama": ollama_text, "mistral": mistral_text}


def fragments(arguments, size=3):
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return [text[i:i + size] for i in range(0, len(text), size)]


def openai_parallel(mistral=False, calls=CALLS):
    """Two calls, each streamed in many fragments (Mistral's wire form is OpenAI's)."""
    def chunk(delta, finish=None):
        return {"id": "c-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    events = [chunk({"role": "assistant", "content": ""})]
    for index, (call_id, name, arguments) in enumerate(calls):
        events.append(chunk({"tool_calls": [{"index": index, "id": call_id, "type": "function",
                                             "function": {"name": name, "arguments": ""}}]}))
        events += [chunk({"tool_calls": [{"index": index, "function": {"arguments": f}}]}) for f in fragments(arguments)]
    events.append(chunk({}, "tool_calls"))
    events.append({"id": "c-1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
                   "usage": {"prompt_tokens": 9, "completion_tokens": 40, "total_tokens": 49}})
    return list(sse(events, done=True).parts)


def anthropic_parallel():
    events = [("message_start", {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [],
        "usage": {"input_tokens": 9, "output_tokens": 1}}})]
    for index, (call_id, name, arguments) in enumerate(CALLS):
        events.append(("content_block_start", {"type": "content_block_start", "index": index,
                                               "content_block": {"type": "tool_use", "id": call_id, "name": name,
                                                                 "input": {}}}))
        events += [("content_block_delta", {"type": "content_block_delta", "index": index,
                                            "delta": {"type": "input_json_delta", "partial_json": f}})
                   for f in [""] + fragments(arguments)]
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"},
                                     "usage": {"output_tokens": 40}}))
    events.append(("message_stop", {"type": "message_stop"}))
    return list(sse(events).parts)


PARALLEL = {"openai": openai_parallel, "mistral": lambda: openai_parallel(mistral=True),
            "anthropic": anthropic_parallel}


def view(events):
    shown = ""
    for event in events:
        if isinstance(event, Rewind):
            shown = shown[: len(shown) - event.chars]
        elif isinstance(event, TextDelta):
            shown += event.text
    return shown


@pytest.fixture
def events_of(client):
    store = MemoryStore()

    def run(provider, **options):
        stream = client(provider, recovery_store=store).stream_chat(
            MESSAGES, model=MODELS[provider], max_tokens=500, timeout=5, **options)
        return stream, list(stream.events())

    yield run
    store.close()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_reasoning_text_and_a_tool_call_arrive_as_typed_events(server, events_of, provider):
    server.enqueue(response(provider, PARTS[provider]()))
    stream, events = events_of(provider)
    assert "".join(e.text for e in events if isinstance(e, ReasoningDelta)) == "".join(REASONING) == stream.reasoning
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "".join(TEXT) == stream.text
    done = [e for e in events if isinstance(e, ToolCallDone)]
    assert [(e.name, e.arguments) for e in done] == [("get_weather", {"city": "Paris"})]
    assert done[0].id == stream.tool_calls[0]["id"]
    assert events[-1] == Done("tool_calls", stream.usage) and stream.usage is not None
    kinds = [type(e) for e in events]
    # Reasoning comes before the text, the text before the call, the call is done before the end.
    assert kinds.index(ReasoningDelta) < kinds.index(TextDelta) < kinds.index(ToolCallDelta) < kinds.index(ToolCallDone)


@pytest.mark.parametrize("provider", sorted(PARALLEL))
def test_parallel_tool_calls_in_many_fragments_grow_then_complete(server, events_of, provider):
    server.enqueue(response(provider, PARALLEL[provider]()))
    stream, events = events_of(provider)
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    for index, (call_id, name, arguments) in enumerate(CALLS):
        mine = [d for d in deltas if d.index == index and d.arguments_delta]
        assert len(mine) == len(fragments(arguments)) > 5
        assert {(d.id, d.name) for d in mine} == {(call_id, name)}
        assert "".join(d.arguments_delta for d in mine) == json.dumps(arguments)
        partials = [d.partial_arguments for d in mine]
        # Parsed while streaming (jiter): each is a dict whose keys only ever grow, the
        # last one the whole object.
        assert all(isinstance(p, dict) for p in partials[2:])
        keys = [list(p or {}) for p in partials]
        assert all(a == b[: len(a)] for a, b in zip(keys, keys[1:]))
        assert partials[-1] == arguments
    done = [(e.index, e.id, e.name, e.arguments) for e in events if isinstance(e, ToolCallDone)]
    assert done == [(i, call_id, name, arguments) for i, (call_id, name, arguments) in enumerate(CALLS)]
    assert [json.loads(c["function"]["arguments"]) for c in stream.tool_calls] == [c[2] for c in CALLS]
    assert events[-1] == Done("tool_calls", stream.usage)


def gemini_parallel():
    calls = [{"functionCall": {"name": name, "args": arguments}} for _, name, arguments in CALLS]
    chunk = {"candidates": [{"content": {"parts": calls, "role": "model"}, "finishReason": "STOP", "index": 0}],
             "modelVersion": "gemini-2.5-flash",
             "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 20, "totalTokenCount": 29}}
    return list(sse([chunk]).parts)


def ollama_parallel():
    calls = [{"function": {"name": name, "arguments": arguments}} for _, name, arguments in CALLS]
    lines = [{"model": "qwen3", "created_at": "2025-01-01T00:00:00Z",
              "message": {"role": "assistant", "content": "", "tool_calls": calls}, "done": False},
             {"model": "qwen3", "created_at": "2025-01-01T00:00:00Z", "message": {"role": "assistant", "content": ""},
              "done": True, "done_reason": "stop", "prompt_eval_count": 9, "eval_count": 20}]
    return [(json.dumps(line) + "\n").encode() for line in lines]


@pytest.mark.parametrize("provider", ["gemini", "ollama"])
def test_parallel_tool_calls_sent_whole_are_one_delta_each_then_done(server, events_of, provider):
    server.enqueue(response(provider, {"gemini": gemini_parallel, "ollama": ollama_parallel}[provider]()))
    stream, events = events_of(provider)
    deltas = [(e.index, e.name, e.partial_arguments) for e in events if isinstance(e, ToolCallDelta)]
    assert deltas == [(i, name, arguments) for i, (_, name, arguments) in enumerate(CALLS)]
    done = [(e.index, e.name, e.arguments) for e in events if isinstance(e, ToolCallDone)]
    assert done == deltas
    assert [c["function"]["name"] for c in stream.tool_calls] == [name for _, name, _ in CALLS]
    assert events[-1] == Done("tool_calls", stream.usage)


def test_malformed_arguments_at_the_end_give_the_raw_text_not_a_crash(server, events_of):
    unclosed = json.dumps(CALLS[1][2])[:-1]  # the model never closed its object
    server.enqueue(response("openai", openai_parallel(calls=[CALLS[0], CALLS[1][:2] + (unclosed,)])))
    stream, events = events_of("openai")
    done = [e for e in events if isinstance(e, ToolCallDone)]
    assert done[0].arguments == CALLS[0][2]
    assert done[1].arguments is None
    assert done[1].raw_arguments == stream.tool_calls[1]["function"]["arguments"] == unclosed
    assert isinstance(events[-1], Done)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_recovered_stream_announces_its_rewind_and_the_view_is_the_final_text(server, events_of, provider):
    pieces = ["First paragraph.\n\n", "Second ", "one goes ", "on"]
    builder = TEXT_BUILDERS[provider]
    server.enqueue(builder(pieces, drop_after=3), builder(["Second one goes on and ends."]))
    stream, events = events_of(provider, stream_recovery=True, recovery={"strategy": "paragraph"})
    rewinds = [e for e in events if isinstance(e, Rewind)]
    assert len(rewinds) == 1 and rewinds[0].attempt == 1 and rewinds[0].strategy == "paragraph"
    assert rewinds[0].chars >= len("Second one goes ")
    assert view(events) == stream.text
    assert stream.text.endswith("Second one goes on and ends.")
    assert isinstance(events[-1], Done) and events[-1].finish_reason == "stop"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_tool_call_broken_mid_arguments_starts_over_and_is_done_once(server, events_of, provider):
    full = PARTS[provider]()
    needle = b'\\"Par' if provider in ("openai", "mistral", "anthropic") else b"get_weather"
    server.enqueue(response(provider, cut_after(full, needle)), response(provider, PARTS[provider](reasoning=[], text=[])))
    stream, events = events_of(provider, stream_recovery=True, recovery={"strategy": "exact"})
    # Nothing of the text was cut (exact), yet the recovery is announced: the call starts over.
    rewinds = [i for i, e in enumerate(events) if isinstance(e, Rewind)]
    assert len(rewinds) == 1 and events[rewinds[0]].chars == 0
    after = [e for e in events[rewinds[0]:] if isinstance(e, ToolCallDelta)]
    assert "".join(d.arguments_delta for d in after) == '{"city": "Paris"}'
    done = [e for e in events if isinstance(e, ToolCallDone)]
    assert [(e.name, e.arguments) for e in done] == [("get_weather", {"city": "Paris"})]
    assert view(events) == stream.text == "".join(TEXT)


def test_break_out_of_events_stops_the_worker_while_the_stream_is_referenced(server, client):
    server.enqueue(openai_text(["one ", "two ", "three"], stall_after=1, stall=Stall(timeout=10)))
    stream = client("openai").stream_chat(MESSAGES, model="gpt-4o-mini", timeout=10)
    for event in stream.events():
        assert event == TextDelta("one ")
        break
    assert server.connection_closed.wait(2)  # the worker closed the connection at once
    assert stream.closed  # and `stream` is still referenced here


def test_chunk_readers_never_see_the_recovery_marker_also_through_poll(server, client):
    server.enqueue(openai_text(["First paragraph.\n\n", "Sec", "ond"], drop_after=2), openai_text(["Second one."]))
    stream = client("openai", recovery_store=MemoryStore()).stream_chat(
        MESSAGES, model="gpt-4o-mini", stream_recovery=True, recovery={"strategy": "exact"})
    seen = []
    while True:
        batch = stream.poll(timeout=5)
        if batch is None:
            break
        seen.extend(batch)
    assert all(type(chunk).__name__ == "Chunk" for chunk in seen)
    assert "".join(chunk.content for chunk in seen) == stream.text == "First paragraph.\n\nSecSecond one."
    assert stream.metrics.recoveries == 1


@pytest.mark.parametrize("first, then", [
    ("next", "events"), ("for", "events"), ("events", "for"), ("events", "next"), ("events", "poll"),
    ("events", "batches"), ("events", "events"),
])
def test_a_stream_is_read_either_as_chunks_or_as_events_never_both(server, client, first, then):
    server.enqueue(openai_text(["a", "b", "c"]))
    stream = client("openai").stream_chat(MESSAGES, model="gpt-4o-mini")
    with stream:
        if first == "next":
            assert next(stream).content == "a"
        elif first == "for":  # a for loop in progress (iter() is what `for` calls)
            loop = iter(stream)
            assert next(loop).content == "a"
        else:
            events = stream.events()
            assert next(events) == TextDelta("a")
        readers = {"events": lambda: next(stream.events()), "for": lambda: [c for c in stream], "next": lambda: next(stream),
                   "poll": lambda: stream.poll(1), "batches": lambda: next(stream.batches())}
        how = "being read as events" if first == "events" else "already being read as chunks"
        if (first, then) == ("events", "events"):
            how = r"events\(\) was already called"
        with pytest.raises(ValueError, match=how):
            readers[then]()
        if first == "events":  # the first reader still gets everything, nothing went to the refused one
            assert list(events) == [TextDelta("b"), TextDelta("c"), Done("stop", None)]
        else:
            assert [c.content for c in (stream if first == "next" else loop) if c.content] == ["b", "c"]
