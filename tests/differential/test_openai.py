"""OpenAI chat completions: generated streams read by streamcoord and by openai-python's
own accumulator (``ChatCompletionStreamState``, behind ``client.chat.completions.stream``) must
give the same text, refusal, reasoning, tool calls, finish reason, usage and other choices."""

from __future__ import annotations

import json
from typing import Any, Dict, List

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.differential.wire import DIFFERENTIAL, SDK_BUGS, Loopback, cut, cuts, http_library, sse_bytes, wire_variants

openai = pytest.importorskip("openai")
httpx = http_library(pytest.importorskip("openai._base_client"))

from openai.lib.streaming.chat import ChatCompletionStreamState  # noqa: E402

from adapters.openai import FINISH_REASONS  # noqa: E402
from streamcoord._chunk import ToolCallAccumulator  # noqa: E402

TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=6)
ARGUMENTS = st.dictionaries(st.text("abcxyz_", min_size=1, max_size=5),
                            st.one_of(st.integers(), st.text(max_size=5), st.booleans(), st.none()), max_size=3)
EXTRA = st.dictionaries(st.sampled_from(["obfuscation", "x_future", "p"]), st.text("abc", max_size=4), max_size=2)


def fragments(draw, text: str) -> List[str]:
    points = sorted(draw(st.lists(st.integers(0, len(text)), max_size=4)))
    edges = [0] + points + [len(text)]
    return [text[a:b] for a, b in zip(edges, edges[1:]) if b > a] or [text]


@st.composite
def choice_deltas(draw, index: int) -> List[Dict[str, Any]]:
    """The deltas of one choice, in order: a role-only first delta, then text, a refusal,
    reasoning (compatible servers), parallel tool calls in many fragments or the legacy
    function_call, then the finish."""
    deltas: List[Dict[str, Any]] = [{"role": "assistant", "content": "", "refusal": None}]
    kind = draw(st.sampled_from(["text", "text", "refusal", "tools", "function_call"]))
    body: List[Dict[str, Any]] = []
    if draw(st.booleans()):
        body += [{"reasoning_content": t} for t in draw(st.lists(TEXT, max_size=3))]
    if kind in ("text", "tools"):
        body += [{"content": t} for t in draw(st.lists(TEXT, min_size=kind == "text", max_size=5))]
    if kind == "refusal":
        body += [{"content": None, "refusal": t} for t in draw(st.lists(TEXT, min_size=1, max_size=3))]
    finish = draw(st.sampled_from(["stop", "length", "content_filter"]))
    if kind == "tools":
        calls = []
        for i in range(draw(st.integers(1, 3))):
            parts = fragments(draw, json.dumps(draw(ARGUMENTS), ensure_ascii=False))
            head = {"index": i, "id": f"call_{index}_{i}", "type": "function",
                    "function": {"name": f"fn{i}", "arguments": ""}}
            calls.append([head] + [{"index": i, "function": {"arguments": p}} for p in parts])
        # Interleave the calls' fragments; each call starts after the one before it.
        queue, started = [calls[0][0]], 1
        pending = {i: 1 for i in range(len(calls))}
        while True:
            options = [i for i in range(started) if pending[i] < len(calls[i])]
            if started < len(calls):
                options.append(-1)
            if not options:
                break
            pick = draw(st.sampled_from(options))
            if pick == -1:
                queue.append(calls[started][0])
                started += 1
            else:
                queue.append(calls[pick][pending[pick]])
                pending[pick] += 1
        body += [{"content": None, "tool_calls": [c]} for c in queue]
        finish = "tool_calls"
    if kind == "function_call":
        parts = fragments(draw, json.dumps(draw(ARGUMENTS)))
        body += [{"content": None, "function_call": {"name": "legacy_fn", "arguments": ""}}]
        body += [{"function_call": {"arguments": p}} for p in parts]
        finish = "function_call"
    deltas += body
    deltas.append({"finish": finish})
    return deltas


@st.composite
def openai_streams(draw):
    n = draw(st.integers(1, 3))
    per_choice = [draw(choice_deltas(i)) for i in range(n)]
    # Interleave the choices (each starts after the one before it, as the API does) and
    # sometimes put several choices' deltas into one event.
    positions = [0] * n
    started = 1
    events: List[List[Dict[str, Any]]] = []
    while True:
        live = [i for i in range(started) if positions[i] < len(per_choice[i])]
        if started < n and (not live or draw(st.booleans())):
            live.append(started)
            started += 1
        if not live:
            break
        # A choice's first delta comes after the one before it has begun (as the API sends).
        live = [i for i in live if i == 0 or positions[i] or positions[i - 1]]
        picked = draw(st.lists(st.sampled_from(live), min_size=1, max_size=2, unique=True))
        group = []
        for i in picked:
            delta = per_choice[i][positions[i]]
            positions[i] += 1
            if "finish" in delta:
                group.append({"index": i, "delta": {}, "logprobs": None, "finish_reason": delta["finish"]})
            else:
                group.append({"index": i, "delta": delta, "logprobs": None, "finish_reason": None})
        events.append(group)
    usage = draw(st.sampled_from(["final", "none"]))
    extra = draw(EXTRA)
    objects = [dict({"id": "chatcmpl-d", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x",
                     "choices": choices}, **extra) for choices in events]
    if usage == "final":
        u = {"prompt_tokens": draw(st.integers(0, 99)), "completion_tokens": draw(st.integers(0, 99))}
        u["total_tokens"] = u["prompt_tokens"] + u["completion_tokens"]
        for obj in objects:
            obj["usage"] = None  # what OpenAI sends on every chunk with include_usage
        objects.append({"id": "chatcmpl-d", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x",
                        "choices": [], "usage": u})
    return objects, n


@pytest.fixture(scope="module")
def loopback():
    lb = Loopback()
    yield lb
    lb.close()


def sdk_final(pieces: List[bytes]):
    def handler(request):
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=iter(pieces))

    client = openai.OpenAI(api_key="sk-differential", base_url="http://sdk.invalid/v1",
                           http_client=httpx.Client(transport=httpx.MockTransport(handler)), max_retries=0)
    # The accumulator behind client.chat.completions.stream(); its snapshot, because
    # get_final_completion() raises on a "length" or "content_filter" finish.
    state = ChatCompletionStreamState()
    for chunk in client.chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": "Hi"}], stream=True):
        state.handle_chunk(chunk)
    return state.current_completion_snapshot


def sdk_view(completion) -> Dict[str, Any]:
    choices = {}
    for choice in completion.choices:
        message = choice.message
        calls = [(c.id, c.function.name, json.loads(c.function.arguments or "{}")) for c in message.tool_calls or ()]
        if message.function_call is not None:
            calls.append((None, message.function_call.name, json.loads(message.function_call.arguments or "{}")))
        choices[choice.index] = {
            "text": message.content or "",
            "refusal": message.refusal or "",
            "reasoning": getattr(message, "reasoning_content", None) or "",
            "tool_calls": calls,
            "finish_reason": FINISH_REASONS.get(choice.finish_reason, "stop") if choice.finish_reason else None,
        }
    usage = completion.usage
    return {"choices": choices, "usage": None if usage is None else {
        "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens}}


def our_view(stream, chunks, n: int) -> Dict[str, Any]:
    choices = {0: {
        "text": stream.text,
        "refusal": "".join(c.metadata.get("refusal", "") for c in chunks if "choice" not in c.metadata),
        "reasoning": stream.reasoning,
        "tool_calls": [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"] or "{}"))
                       for c in stream.tool_calls],
        "finish_reason": stream.finish_reason,
    }}
    for i in range(1, n):
        mine = [c for c in chunks if c.metadata.get("choice") == i]
        finishes = [c.finish_reason for c in mine if c.finish_reason]
        acc = ToolCallAccumulator()
        for c in mine:
            if c.tool_calls:
                acc.add(c.tool_calls)
        choices[i] = {
            "text": "".join(c.content for c in mine),
            "refusal": "".join(c.metadata.get("refusal", "") for c in mine),
            "reasoning": "".join(c.metadata.get("reasoning", "") for c in mine),
            "tool_calls": [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"] or "{}"))
                           for c in acc.result()],
            "finish_reason": finishes[-1] if finishes else None,
        }
    return {"choices": choices, "usage": stream.usage}


@DIFFERENTIAL
@given(stream=openai_streams(), variant=wire_variants(), points=cuts())
def test_openai_sdk_and_streamcoord_agree(loopback, stream, variant, points):
    objects, n = stream
    events = [(None, json.dumps(o, ensure_ascii=False)) for o in objects] + [(None, "[DONE]")]
    body = sse_bytes(events, variant, len(points))
    pieces = cut(body, points)
    ours, chunks = loopback.stream("openai", pieces, model="gpt-x")
    # SDK_BUGS["sse-bom"]: the SDK is fed the same stream without its byte order mark.
    sdk_pieces = cut(body[3:], points) if variant["bom"] else pieces
    assert our_view(ours, chunks, n) == sdk_view(sdk_final(sdk_pieces))


def test_openai_sdk_loses_the_first_event_after_a_byte_order_mark(loopback):
    """SDK_BUGS["sse-bom"], shown: fix the SDK and this test fails."""
    assert SDK_BUGS["sse-bom"]
    first = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x",
             "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hello"}, "finish_reason": None}]}
    last = dict(first, choices=[{"index": 0, "delta": {"content": " world"}, "finish_reason": "stop"}])
    variant = {"eol": "\n", "bom": True, "comments": False, "space": True}
    body = sse_bytes([(None, json.dumps(first)), (None, json.dumps(last)), (None, "[DONE]")], variant, 1)
    ours, _ = loopback.stream("openai", [body], model="gpt-x")
    assert ours.text == "Hello world"
    assert sdk_final([body]).choices[0].message.content == " world"


def chunk_data(delta, finish=None, **extra):
    return (None, json.dumps(dict({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x",
                                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}, **extra)))


def fragment(id, name, arguments):
    return {"tool_calls": [{"index": 0, "id": id, "type": "function", "function": {"name": name, "arguments": arguments}}]}


PLAIN = {"eol": "\n", "bom": False, "comments": False, "space": True}


@pytest.mark.parametrize("fragments, expected, sdk_gives", [
    ([fragment("call_1", "search", '{"q"'), fragment("call_1", "search", ": 1}")],
     [("call_1", "search", '{"q": 1}')], [("call_1call_1", "searchsearch", '{"q": 1}')]),
    ([fragment("call_a", "a", '{"x": 1}'), fragment("call_b", "b", '{"y": 2}')],
     [("call_a", "a", '{"x": 1}'), ("call_b", "b", '{"y": 2}')], [("call_acall_b", "ab", '{"x": 1}{"y": 2}')]),
])
def test_openai_sdk_merges_compatible_servers_tool_call_fragments(loopback, fragments, expected, sdk_gives):
    """SDK_BUGS["openai-compatible-tool-calls"], shown: fix the SDK and this test fails."""
    assert SDK_BUGS["openai-compatible-tool-calls"]
    body = sse_bytes([chunk_data(f) for f in fragments] + [chunk_data({}, "tool_calls"), (None, "[DONE]")], PLAIN, 1)
    ours, _ = loopback.stream("openai", [body], model="gpt-x")
    assert [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in ours.tool_calls] == expected
    message = sdk_final([body]).choices[0].message
    assert [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls] == sdk_gives


def test_openai_sdk_loses_a_usage_followed_by_a_chunk_without_one(loopback):
    """SDK_BUGS["openai-usage-overwritten"], shown: fix the SDK and this test fails."""
    assert SDK_BUGS["openai-usage-overwritten"]
    usage = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    body = sse_bytes([chunk_data({"content": "hi"}), chunk_data({}, "stop", usage=usage),
                      chunk_data({"content": ""}, usage=None), (None, "[DONE]")], PLAIN, 1)
    ours, _ = loopback.stream("openai", [body], model="gpt-x")
    assert ours.usage == usage
    assert sdk_final([body]).usage is None
