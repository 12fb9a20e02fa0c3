"""Anthropic Messages: generated streams read by streamcoord and by anthropic-python's
``client.messages.stream(...).get_final_message()`` (``accumulate_event``) must give the
same text, thinking and signatures, tool calls, server-tool uses and results, citations,
finish reason and usage."""

from __future__ import annotations

import json
from typing import Any, Dict, List

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.differential.wire import DIFFERENTIAL, Loopback, cut, cuts, http_library, sse_bytes, wire_variants

anthropic = pytest.importorskip("anthropic")
httpx = http_library(pytest.importorskip("anthropic._base_client"))

from adapters.anthropic import FINISH_REASONS  # noqa: E402
from streamcoord._chunk import normalize_usage  # noqa: E402

TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=6)
ARGUMENTS = st.dictionaries(st.text("abcxyz_", min_size=1, max_size=5),
                            st.one_of(st.integers(), st.text(max_size=5), st.booleans(), st.none()), max_size=3)
COUNT = st.integers(0, 999)


def fragments(draw, text: str) -> List[str]:
    points = sorted(draw(st.lists(st.integers(0, len(text)), max_size=4)))
    edges = [0] + points + [len(text)]
    return [text[a:b] for a, b in zip(edges, edges[1:]) if b > a]


def delta(kind: str, **fields: Any) -> Dict[str, Any]:
    return dict({"type": kind}, **fields)


@st.composite
def blocks(draw, index: int) -> List[Dict[str, Any]]:
    """One content block as (start, deltas) - or two, for a server tool and its result."""
    kind = draw(st.sampled_from(["text", "text", "thinking", "redacted_thinking", "tool_use", "server_tool"]))
    if kind == "text":
        deltas = [delta("text_delta", text=t) for t in draw(st.lists(TEXT, max_size=5))]
        if draw(st.booleans()):
            citation = {"type": "web_search_result_location", "url": f"https://e.example/{index}",
                        "title": "T", "encrypted_index": "x", "cited_text": draw(TEXT)}
            deltas.insert(draw(st.integers(0, len(deltas))), delta("citations_delta", citation=citation))
        if draw(st.booleans()):
            deltas.insert(draw(st.integers(0, len(deltas))), delta("future_delta", anything=1))
        return [({"type": "text", "text": ""}, deltas)]
    if kind == "thinking":
        deltas = [delta("thinking_delta", thinking=t) for t in draw(st.lists(TEXT, min_size=1, max_size=4))]
        deltas.append(delta("signature_delta", signature=draw(st.text("abcdefXYZ0123+/=", min_size=8, max_size=16))))
        return [({"type": "thinking", "thinking": "", "signature": ""}, deltas)]
    if kind == "redacted_thinking":
        return [({"type": "redacted_thinking", "data": draw(st.text("abcXYZ", min_size=4, max_size=12))}, [])]
    arguments = draw(ARGUMENTS)
    parts = fragments(draw, json.dumps(arguments, ensure_ascii=False)) if arguments or draw(st.booleans()) else []
    if parts and draw(st.booleans()):
        parts.insert(0, "")  # the API's first fragment is often empty
    deltas = [delta("input_json_delta", partial_json=p) for p in parts]
    if kind == "tool_use":
        return [({"type": "tool_use", "id": f"toolu_{index}", "name": f"fn{index}", "input": {}}, deltas)]
    use_id = f"srvtoolu_{index}"
    result = {"type": "web_search_tool_result", "tool_use_id": use_id,
              "content": [{"type": "web_search_result", "url": f"https://e.example/{index}", "title": draw(TEXT),
                           "encrypted_content": "enc", "page_age": None}]}
    return [({"type": "server_tool_use", "id": use_id, "name": "web_search", "input": {}}, deltas), (result, [])]


@st.composite
def anthropic_streams(draw):
    events: List[Dict[str, Any]] = []
    usage = {"input_tokens": draw(COUNT), "output_tokens": draw(st.integers(0, 5)),
             "cache_creation_input_tokens": draw(st.one_of(st.none(), COUNT)),
             "cache_read_input_tokens": draw(st.one_of(st.none(), COUNT))}
    events.append({"type": "message_start", "message": {
        "id": "msg_d", "type": "message", "role": "assistant", "model": "claude-x", "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": usage}})
    content: List[Any] = []
    for _ in range(draw(st.integers(0, 4))):
        content += draw(blocks(len(content)))
    noise = st.sampled_from([None, None, None, {"type": "ping"}, {"type": "future_event", "x": [1]}])
    for index, (start, deltas) in enumerate(content):
        events.append({"type": "content_block_start", "index": index, "content_block": start})
        for d in deltas:
            extra = draw(noise)
            if extra is not None:
                events.append(extra)
            events.append({"type": "content_block_delta", "index": index, "delta": d})
        events.append({"type": "content_block_stop", "index": index})
    stop = draw(st.sampled_from(sorted(FINISH_REASONS)))
    # message_delta's counts are cumulative: the input counts repeat the start's, or are
    # null (the start's stay).
    final_usage = {"output_tokens": draw(COUNT),
                   "input_tokens": draw(st.sampled_from([None, usage["input_tokens"]])),
                   "cache_read_input_tokens": draw(st.sampled_from([None, usage["cache_read_input_tokens"]]))}
    if draw(st.booleans()):
        final_usage["server_tool_use"] = {"web_search_requests": draw(st.integers(0, 3))}
    events.append({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}, "usage": final_usage})
    events.append({"type": "message_stop"})
    return events


@pytest.fixture(scope="module")
def loopback():
    lb = Loopback()
    yield lb
    lb.close()


def sdk_final(pieces: List[bytes]):
    def handler(request):
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=iter(pieces))

    client = anthropic.Anthropic(api_key="sk-differential", base_url="http://sdk.invalid",
                                 http_client=httpx.Client(transport=httpx.MockTransport(handler)), max_retries=0)
    with client.messages.stream(model="claude-x", max_tokens=64, messages=[{"role": "user", "content": "Hi"}]) as stream:
        return stream.get_final_message()


def sdk_view(message) -> Dict[str, Any]:
    blocks = message.content
    return {
        "text": "".join(b.text for b in blocks if b.type == "text"),
        "reasoning": "".join(b.thinking for b in blocks if b.type == "thinking"),
        "signatures": [b.signature for b in blocks if b.type == "thinking"],
        "redacted": [b.data for b in blocks if b.type == "redacted_thinking"],
        "tool_calls": [(b.id, b.name, b.input) for b in blocks if b.type == "tool_use"],
        "server_tool_uses": [(b.id, b.name, b.input) for b in blocks if b.type == "server_tool_use"],
        "server_tool_results": [b.to_dict() for b in blocks if b.type.endswith("_tool_result")],
        "citations": [c.to_dict() for b in blocks if b.type == "text" for c in b.citations or ()],
        "finish_reason": FINISH_REASONS.get(message.stop_reason, "stop"),
        "usage": normalize_usage(message.usage.input_tokens, message.usage.output_tokens),
    }


def our_view(stream, chunks) -> Dict[str, Any]:
    meta = [c.metadata for c in chunks]
    return {
        "text": stream.text,
        "reasoning": stream.reasoning,
        "signatures": [m["thinking_signature"] for m in meta if "thinking_signature" in m],
        "redacted": [m["redacted_thinking"] for m in meta if "redacted_thinking" in m],
        "tool_calls": [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in stream.tool_calls],
        "server_tool_uses": [(m["server_tool_use"]["id"], m["server_tool_use"]["name"], m["server_tool_use"]["input"])
                             for m in meta if "server_tool_use" in m],
        "server_tool_results": [m["server_tool_result"] for m in meta if "server_tool_result" in m],
        "citations": [c for m in meta for c in m.get("citations", ())],
        "finish_reason": stream.finish_reason,
        "usage": stream.usage,
    }


@DIFFERENTIAL
@given(events=anthropic_streams(), variant=wire_variants(), points=cuts())
def test_anthropic_sdk_and_streamcoord_agree(loopback, events, variant, points):
    body = sse_bytes([(e["type"], json.dumps(e, ensure_ascii=False)) for e in events], variant, len(points))
    pieces = cut(body, points)
    ours, chunks = loopback.stream("anthropic", pieces, model="claude-x")
    # SDK_BUGS["sse-bom"]: the SDK is fed the same stream without its byte order mark.
    sdk_pieces = cut(body[3:], points) if variant["bom"] else pieces
    assert our_view(ours, chunks) == sdk_view(sdk_final(sdk_pieces))
