"""After a recovery, stream.text, stream.tool_calls and stream.reasoning are what the same
answer gives unbroken, on every provider, also when the break fell inside a tool call's
arguments or inside a reasoning block.

What a continuation re-sends: the request carries only the kept text (an assistant turn or
prefix), never tool calls or reasoning. So a break inside the reasoning (no text kept yet)
re-sends the original request and the provider answers anew, reasoning included; a break
inside a tool call continues after the kept text and the provider sends the tool call again,
whole. Each answer is scripted per provider in its own wire format.
"""

from __future__ import annotations

import json

import pytest

from recovery_store import MemoryStore
from tests.support.fakeserver import Drop, Response, sse

MESSAGES = [{"role": "user", "content": "What is the weather in Paris?"}]
MODELS = {"openai": "gpt-4o-mini", "mistral": "magistral-small-latest", "anthropic": "claude-sonnet-4-5",
          "gemini": "gemini-2.5-flash", "ollama": "qwen3"}
REASONING = ["The user wants the wea", "ther in Paris. ", "I should call the tool."]
TEXT = ["I will check ", "the weather."]
ARGUMENTS = ['{"city": ', '"Par', 'is"}']  # streamed in pieces where the provider does
NDJSON = "application/x-ndjson"


# -- each provider's wire format: lists of parts, one per event ------------------------------
def openai_parts(reasoning=REASONING, text=TEXT, tool=True, mistral=False):
    def chunk(delta, finish=None):
        return {"id": "c-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    def thought(piece):
        if mistral:  # Magistral: content is a list of typed parts
            return {"content": [{"type": "thinking", "thinking": [{"type": "text", "text": piece}]}]}
        return {"reasoning_content": piece}

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk(thought(piece)) for piece in reasoning]
    events += [chunk({"content": piece}) for piece in text]
    if tool:
        events.append(chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                             "function": {"name": "get_weather", "arguments": ""}}]}))
        events += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": a}}]}) for a in ARGUMENTS]
    events.append(chunk({}, "tool_calls" if tool else "stop"))
    events.append({"id": "c-1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
                   "usage": {"prompt_tokens": 9, "completion_tokens": 20, "total_tokens": 29}})
    return list(sse(events, done=True).parts)


def anthropic_parts(reasoning=REASONING, text=TEXT, tool=True):
    events = [("message_start", {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [],
        "usage": {"input_tokens": 9, "output_tokens": 1}}})]
    index = 0

    def block(start, deltas):
        nonlocal index
        out = [("content_block_start", {"type": "content_block_start", "index": index, "content_block": start})]
        out += [("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}) for d in deltas]
        out.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        index += 1
        return out

    if reasoning:
        events += block({"type": "thinking", "thinking": ""},
                        [{"type": "thinking_delta", "thinking": r} for r in reasoning]
                        + [{"type": "signature_delta", "signature": "c2ln"}])
    if text:
        events += block({"type": "text", "text": ""}, [{"type": "text_delta", "text": t} for t in text])
    if tool:
        events += block({"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}},
                        [{"type": "input_json_delta", "partial_json": a} for a in [""] + ARGUMENTS])
    events.append(("message_delta", {"type": "message_delta",
                                     "delta": {"stop_reason": "tool_use" if tool else "end_turn", "stop_sequence": None},
                                     "usage": {"output_tokens": 20}}))
    events.append(("message_stop", {"type": "message_stop"}))
    return list(sse(events).parts)


def gemini_parts(reasoning=REASONING, text=TEXT, tool=True):
    def chunk(parts, finish=None):
        candidate = {"content": {"parts": parts, "role": "model"}, "index": 0}
        if finish:
            candidate["finishReason"] = finish
        return {"candidates": [candidate], "modelVersion": "gemini-2.5-flash",
                "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 20, "totalTokenCount": 29}}

    events = [chunk([{"text": r, "thought": True}]) for r in reasoning]
    events += [chunk([{"text": t}]) for t in text]
    if tool:  # Gemini sends a call whole
        events.append(chunk([{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]))
    events.append(chunk([{"text": ""}], "STOP"))
    return list(sse(events).parts)


def ollama_parts(reasoning=REASONING, text=TEXT, tool=True):
    def line(message, **extra):
        return (json.dumps({"model": "qwen3", "created_at": "2025-01-01T00:00:00Z",
                            "message": dict({"role": "assistant", "content": ""}, **message), **extra}) + "\n").encode()

    parts = [line({"thinking": r}, done=False) for r in reasoning]
    parts += [line({"content": t}, done=False) for t in text]
    if tool:  # Ollama sends a call whole
        parts.append(line({"tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
                          done=False))
    parts.append(line({}, done=True, done_reason="stop", prompt_eval_count=9, eval_count=20))
    return parts


PARTS = {
    "openai": openai_parts,
    "mistral": lambda **kw: openai_parts(mistral=True, **kw),
    "anthropic": anthropic_parts,
    "gemini": gemini_parts,
    "ollama": ollama_parts,
}
PROVIDERS = sorted(PARTS)


def response(provider, parts):
    return Response(parts=tuple(parts), content_type=NDJSON if provider == "ollama" else "text/event-stream")


def cut_after(parts, needle):
    """The parts up to and including the first that holds ``needle``, then a dropped connection."""
    i = next(i for i, part in enumerate(parts) if needle in part)
    return parts[: i + 1] + [Drop()]


# -- the tests -----------------------------------------------------------------------------
@pytest.fixture
def answer_of(server, client):
    store = MemoryStore()

    def run(provider, **options):
        stream = client(provider, recovery_store=store).stream_chat(
            MESSAGES, model=MODELS[provider], max_tokens=500, timeout=5, **options)
        text = "".join(chunk.content for chunk in stream)
        assert text == stream.text
        return stream

    yield run
    store.close()


def outcome(stream):
    # A call's "index" is the provider's position of it in its answer (Anthropic: the
    # content block, after the thinking and text blocks a continuation does not re-send).
    calls = [{k: v for k, v in call.items() if k != "index"} for call in stream.tool_calls]
    return stream.text, calls, stream.reasoning, stream.finish_reason


@pytest.mark.parametrize("provider", PROVIDERS)
def test_recovery_inside_a_reasoning_block_gives_the_unbroken_answer(server, answer_of, provider):
    full = PARTS[provider]()
    server.enqueue(response(provider, full))
    unbroken = outcome(answer_of(provider))
    assert unbroken[2] == "".join(REASONING) and unbroken[0] == "".join(TEXT)

    # Broken after the first reasoning piece: nothing of the text is kept, so the original
    # request goes out again and the provider answers anew, reasoning first.
    server.enqueue(response(provider, cut_after(full, b"wea")), response(provider, full))
    stream = answer_of(provider, stream_recovery=True, recovery={"strategy": "exact"})
    assert outcome(stream) == unbroken
    assert stream.metrics.recoveries == 1
    first, again = server.requests[-2:]
    assert again.json == first.json


@pytest.mark.parametrize("provider", PROVIDERS)
def test_recovery_inside_a_tool_call_gives_the_unbroken_answer(server, answer_of, provider):
    full = PARTS[provider]()
    server.enqueue(response(provider, full))
    unbroken = outcome(answer_of(provider))
    assert [call["function"] for call in unbroken[1]] == [{"name": "get_weather", "arguments": '{"city": "Paris"}'}]

    # Broken inside the arguments (where they are streamed in pieces) or right after the
    # whole call: the text is kept, and the continuation re-sends the call, whole.
    needle = b'\\"Par' if provider in ("openai", "mistral", "anthropic") else b"get_weather"
    rest = PARTS[provider](reasoning=[], text=[])
    server.enqueue(response(provider, cut_after(full, needle)), response(provider, rest))
    stream = answer_of(provider, stream_recovery=True, recovery={"strategy": "exact"})
    assert outcome(stream) == unbroken
    assert stream.metrics.recoveries == 1
    assert "".join(TEXT) in json.dumps(server.requests[-1].json)  # a continuation of the kept text
