"""Gemini streamGenerateContent: generated streams read by streamcoord and by google-genai
(``client.models.generate_content_stream(...)``, its parts accumulated) must give the same
text, thought parts, function calls (with their thought signatures), finish reason and
usage."""

from __future__ import annotations

import base64
import json
from typing import Any, Dict, List

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.differential.wire import (
    DIFFERENTIAL,
    SDK_BUGS,
    Loopback,
    cut,
    cuts,
    escape_unicode_line_breaks,
    sse_bytes,
    wire_variants,
)

genai = pytest.importorskip("google.genai")
pytest.importorskip("google.genai.errors")
httpx = pytest.importorskip("httpx")

from adapters.gemini import FINISH_REASONS, gemini_usage  # noqa: E402

TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=6)
ARGUMENTS = st.dictionaries(st.text("abcxyz_", min_size=1, max_size=5),
                            st.one_of(st.integers(), st.text(max_size=5), st.booleans(), st.none()), max_size=3)
SIGNATURE = st.binary(min_size=4, max_size=12).map(lambda b: base64.b64encode(b).decode("ascii"))
COUNT = st.integers(0, 999)


@st.composite
def part(draw, index: int) -> Dict[str, Any]:
    kind = draw(st.sampled_from(["text", "text", "thought", "call"]))
    if kind == "text":
        out: Dict[str, Any] = {"text": draw(TEXT)}
    elif kind == "thought":
        out = {"text": draw(TEXT), "thought": True}
    else:
        out = {"functionCall": {"name": f"fn{index}", "args": draw(ARGUMENTS)}}
        if draw(st.booleans()):
            out["functionCall"]["id"] = f"call-{index}"
    if kind != "thought" and draw(st.booleans()):
        out["thoughtSignature"] = draw(SIGNATURE)
    return out


@st.composite
def gemini_streams(draw) -> List[Dict[str, Any]]:
    events = []
    prompt = draw(COUNT)
    n = draw(st.integers(1, 5))
    count = 0
    for i in range(n):
        parts = [draw(part(count + j)) for j in range(draw(st.integers(0 if i < n - 1 else 1, 3)))]
        count += len(parts)
        candidate: Dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        usage: Dict[str, Any] = {"promptTokenCount": prompt, "totalTokenCount": prompt}
        if i == n - 1:
            candidate["finishReason"] = draw(st.sampled_from(["STOP", "STOP", "MAX_TOKENS", "SAFETY", "RECITATION",
                                                              "MALFORMED_FUNCTION_CALL", "OTHER"]))
            out, thoughts = draw(COUNT), draw(st.one_of(st.none(), COUNT))
            usage = {"promptTokenCount": prompt, "candidatesTokenCount": out,
                     "totalTokenCount": prompt + out + (thoughts or 0)}
            if thoughts is not None:
                usage["thoughtsTokenCount"] = thoughts
        events.append({"candidates": [candidate], "usageMetadata": usage, "modelVersion": "gemini-x",
                       "responseId": "resp-1"})
    return events


@pytest.fixture(scope="module")
def loopback():
    lb = Loopback()
    yield lb
    lb.close()


class SDK:
    """One google-genai client (making one takes ~0.2 s) that answers with ``pieces``."""

    def __init__(self) -> None:
        self.pieces: List[bytes] = []
        transport = httpx.MockTransport(
            lambda request: httpx.Response(200, headers={"content-type": "text/event-stream"}, content=iter(self.pieces)))
        options = genai.types.HttpOptions(base_url="http://sdk.invalid", httpx_client=httpx.Client(transport=transport))
        self.client = genai.Client(api_key="sk-differential", http_options=options)


@pytest.fixture(scope="module")
def sdk():
    return SDK()


def sdk_view(sdk: SDK, pieces: List[bytes]) -> Dict[str, Any]:
    sdk.pieces = pieces
    client = sdk.client
    text, thoughts, calls, finish, usage = [], [], [], None, None
    for response in client.models.generate_content_stream(model="gemini-x", contents="Hi"):
        if response.usage_metadata is not None:
            usage = response.usage_metadata
        for candidate in response.candidates or ():
            for p in (candidate.content.parts if candidate.content else None) or ():
                if p.function_call is not None:
                    call = p.function_call
                    signature = base64.b64encode(p.thought_signature).decode("ascii") if p.thought_signature else None
                    calls.append((call.id, call.name, dict(call.args or {}), signature))
                elif p.text and p.thought:
                    thoughts.append(p.text)
                elif p.text:
                    text.append(p.text)
            if candidate.finish_reason is not None:
                finish = candidate.finish_reason.value if hasattr(candidate.finish_reason, "value") else candidate.finish_reason
    normalized = FINISH_REASONS.get(finish, "error")
    raw_usage = {"promptTokenCount": usage.prompt_token_count, "candidatesTokenCount": usage.candidates_token_count,
                 "thoughtsTokenCount": usage.thoughts_token_count, "totalTokenCount": usage.total_token_count}
    return {
        "text": "".join(text), "reasoning": "".join(thoughts), "tool_calls": calls,
        "finish_reason": "tool_calls" if normalized == "stop" and calls else normalized,
        "usage": gemini_usage(raw_usage),
    }


def our_view(stream) -> Dict[str, Any]:
    return {
        "text": stream.text, "reasoning": stream.reasoning,
        "tool_calls": [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]), c.get("thought_signature"))
                       for c in stream.tool_calls],
        "finish_reason": stream.finish_reason,
        "usage": stream.usage,
    }


@DIFFERENTIAL
@given(events=gemini_streams(), variant=wire_variants(), points=cuts())
def test_gemini_sdk_and_streamcoord_agree(loopback, sdk, events, variant, points):
    data = [(None, json.dumps(e, ensure_ascii=False)) for e in events]
    body = sse_bytes(data, variant, len(points))
    ours, _ = loopback.stream("gemini", cut(body, points), model="gemini-x")
    # SDK_BUGS["sse-bom"] and ["genai-sse-lines"]: the SDK gets the same events without a
    # byte order mark, comments or "data:" without its space; ["ndjson-unicode-lines"]
    # (google-genai 1.x): with U+0085, U+2028 and U+2029 escaped.
    plain = escape_unicode_line_breaks(sse_bytes(data, dict(variant, bom=False, comments=False, space=True), len(points)))
    assert our_view(ours) == sdk_view(sdk, cut(plain, points))


@pytest.mark.parametrize("line", [b": keep-alive\r\n\r\n", b"data:{}\r\n\r\n", "\ufeff".encode()])
def test_genai_fails_on_an_sse_comment_data_without_a_space_or_a_bom(loopback, sdk, line):
    """SDK_BUGS["genai-sse-lines"] and ["sse-bom"], shown: fix the SDK and this test fails."""
    assert SDK_BUGS["genai-sse-lines"] and SDK_BUGS["sse-bom"]
    event = {"candidates": [{"content": {"parts": [{"text": "Hi"}], "role": "model"}, "finishReason": "STOP"}],
             "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 1, "totalTokenCount": 2}}
    body = line + sse_bytes([(None, json.dumps(event))], {"eol": "\r\n", "bom": False, "comments": False, "space": True}, 1)
    ours, _ = loopback.stream("gemini", [body], model="gemini-x")
    assert ours.text == "Hi"
    with pytest.raises(genai.errors.UnknownApiResponseError):
        sdk_view(sdk, [body])
