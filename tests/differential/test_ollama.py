"""Ollama /api/chat: generated NDJSON streams read by streamcoord and by ollama-python
(``Client.chat(..., stream=True)``, accumulated as its documentation does) must give the
same text, thinking, tool calls, finish and token counts."""

from __future__ import annotations

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
    http_library,
    ndjson_bytes,
)

ollama = pytest.importorskip("ollama")
httpx = http_library(pytest.importorskip("ollama._client"))

from adapters.ollama import FINISH_REASONS  # noqa: E402

TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=6)
ARGUMENTS = st.dictionaries(st.text("abcxyz_", min_size=1, max_size=5),
                            st.one_of(st.integers(), st.text(max_size=5), st.booleans(), st.none()), max_size=3)


@st.composite
def ollama_streams(draw) -> List[Dict[str, Any]]:
    lines: List[Dict[str, Any]] = []

    def line(message: Dict[str, Any], **extra: Any) -> Dict[str, Any]:
        return dict({"model": "llama-x", "created_at": "2026-01-01T00:00:00Z",
                     "message": dict({"role": "assistant", "content": ""}, **message), "done": False}, **extra)

    for thought in draw(st.lists(TEXT, max_size=3)):
        lines.append(line({"thinking": thought}))
    for piece in draw(st.lists(TEXT, max_size=5)):
        lines.append(line({"content": piece}))
    calls = [{"function": {"name": f"fn{i}", "arguments": draw(ARGUMENTS)}} for i in range(draw(st.integers(0, 2)))]
    if calls:
        # Ollama sends tool calls complete, all in one line or one a line.
        if draw(st.booleans()):
            lines.append(line({"tool_calls": calls}))
        else:
            lines += [line({"tool_calls": [c]}) for c in calls]
    final = line({}, done=True, done_reason=draw(st.sampled_from(["stop", "length", "load"])),
                 total_duration=draw(st.integers(0, 10**9)), load_duration=1,
                 prompt_eval_count=draw(st.integers(0, 999)), prompt_eval_duration=2,
                 eval_count=draw(st.integers(0, 999)), eval_duration=3)
    lines.append(final)
    return lines


@pytest.fixture(scope="module")
def loopback():
    lb = Loopback()
    yield lb
    lb.close()


def sdk_view(pieces: List[bytes]) -> Dict[str, Any]:
    def handler(request):
        return httpx.Response(200, headers={"content-type": "application/x-ndjson"}, content=iter(pieces))

    client = ollama.Client(host="http://sdk.invalid:11434", transport=httpx.MockTransport(handler))
    text, thinking, calls, last = [], [], [], None
    for part in client.chat(model="llama-x", messages=[{"role": "user", "content": "Hi"}], stream=True):
        text.append(part.message.content or "")
        thinking.append(part.message.thinking or "")
        calls += [(c.function.name, dict(c.function.arguments)) for c in part.message.tool_calls or ()]
        last = part
    finish = FINISH_REASONS.get(last.done_reason, "stop")
    return {
        "text": "".join(text), "reasoning": "".join(thinking), "tool_calls": calls,
        "finish_reason": "tool_calls" if calls and finish == "stop" else finish,
        "usage": (last.prompt_eval_count, last.eval_count),
    }


def our_view(stream) -> Dict[str, Any]:
    return {
        "text": stream.text, "reasoning": stream.reasoning,
        "tool_calls": [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in stream.tool_calls],
        "finish_reason": stream.finish_reason,
        "usage": (stream.usage["prompt_tokens"], stream.usage["completion_tokens"]),
    }


@DIFFERENTIAL
@given(lines=ollama_streams(), crlf=st.booleans(), points=cuts())
def test_ollama_sdk_and_streamcoord_agree(loopback, lines, crlf, points):
    body = ndjson_bytes(lines, "\r\n" if crlf else "\n")
    ours, _ = loopback.stream("ollama", cut(body, points), content_type="application/x-ndjson", model="llama-x")
    # SDK_BUGS["ndjson-unicode-lines"]: the SDK gets those characters escaped.
    assert our_view(ours) == sdk_view(cut(escape_unicode_line_breaks(body), points))


def test_ollama_sdk_breaks_a_line_at_a_unicode_line_separator_inside_a_string(loopback):
    """SDK_BUGS["ndjson-unicode-lines"], shown: fix the SDK and this test fails."""
    assert SDK_BUGS["ndjson-unicode-lines"]
    text = "one\u0085two"
    lines = [{"model": "llama-x", "message": {"role": "assistant", "content": text}, "done": False},
             {"model": "llama-x", "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop",
              "prompt_eval_count": 1, "eval_count": 2}]
    body = ndjson_bytes(lines)
    ours, _ = loopback.stream("ollama", [body], content_type="application/x-ndjson", model="llama-x")
    assert ours.text == text
    with pytest.raises(json.JSONDecodeError):
        sdk_view([body])
