"""Mistral chat completions: generated streams read by streamcoord and by mistralai
(``client.chat.stream(...)``, accumulated as its documentation does) must give the same
text, thinking (Magistral's typed parts), tool calls (arguments as a string or an object),
finish reason and usage."""

from __future__ import annotations

import json
import sys
from typing import Any, Dict, List

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.differential.wire import DIFFERENTIAL, Loopback, cut, cuts, http_library, sse_bytes, wire_variants

mistralai = pytest.importorskip("mistralai")
try:  # mistralai 2+
    from mistralai.client import Mistral
except ImportError:  # mistralai 1.x
    from mistralai import Mistral
httpx = http_library(sys.modules[Mistral.__module__])

from adapters.mistral import FINISH_REASONS  # noqa: E402

TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=6)
ARGUMENTS = st.dictionaries(st.text("abcxyz_", min_size=1, max_size=5),
                            st.one_of(st.integers(), st.text(max_size=5), st.booleans(), st.none()), max_size=3)


@st.composite
def mistral_streams(draw) -> List[Dict[str, Any]]:
    def chunk(delta: Dict[str, Any], finish: Any = None, **extra: Any) -> Dict[str, Any]:
        return dict({"id": "m1", "object": "chat.completion.chunk", "created": 1, "model": "mistral-x",
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}, **extra)

    chunks = [chunk({"role": "assistant", "content": ""})]
    if draw(st.booleans()):  # Magistral: typed parts, thinking first
        for thought in draw(st.lists(TEXT, min_size=1, max_size=3)):
            chunks.append(chunk({"content": [{"type": "thinking", "thinking": [{"type": "text", "text": thought}]}]}))
        chunks += [chunk({"content": [{"type": "text", "text": t}]}) for t in draw(st.lists(TEXT, max_size=4))]
    else:
        chunks += [chunk({"content": t}) for t in draw(st.lists(TEXT, max_size=5))]
    calls = []
    for i in range(draw(st.integers(0, 2))):
        arguments = draw(ARGUMENTS)
        call = {"id": f"c{i}xYz12", "function": {"name": f"fn{i}", "arguments": (
            arguments if draw(st.booleans()) else json.dumps(arguments, ensure_ascii=False))}}
        index = draw(st.sampled_from(["none", "zero", "position"]))
        if index != "none":
            call["index"] = 0 if index == "zero" else i
        calls.append(call)
    finish = "tool_calls" if calls else draw(st.sampled_from(["stop", "length", "model_length", "error"]))
    usage = {"prompt_tokens": draw(st.integers(0, 99)), "completion_tokens": draw(st.integers(0, 99))}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    padding = {"p": "abcdefgh"[: draw(st.integers(0, 8))]} if draw(st.booleans()) else {}
    if calls:
        chunks.append(chunk({"content": None, "tool_calls": calls}, finish, usage=usage, **padding))
    else:
        chunks.append(chunk({"content": ""}, finish, usage=usage, **padding))
    return chunks


@pytest.fixture(scope="module")
def loopback():
    lb = Loopback()
    yield lb
    lb.close()


class SDK:
    """One mistralai client that answers with ``pieces``."""

    def __init__(self) -> None:
        self.pieces: List[bytes] = []
        transport = httpx.MockTransport(
            lambda request: httpx.Response(200, headers={"content-type": "text/event-stream"}, content=iter(self.pieces)))
        self.client = Mistral(api_key="sk-differential", server_url="http://sdk.invalid",
                                             client=httpx.Client(transport=transport))


@pytest.fixture(scope="module")
def sdk():
    return SDK()


def sdk_view(sdk: SDK, pieces: List[bytes]) -> Dict[str, Any]:
    sdk.pieces = pieces
    client = sdk.client
    text, thinking, calls, finish, usage = [], [], [], None, None
    for event in client.chat.stream(model="mistral-x", messages=[{"role": "user", "content": "Hi"}]):
        data = event.data
        if data.usage is not None:
            usage = (data.usage.prompt_tokens, data.usage.completion_tokens, data.usage.total_tokens)
        for choice in data.choices:
            content = choice.delta.content
            if isinstance(content, str):
                text.append(content)
            elif isinstance(content, list):
                for part in content:
                    if part.type == "text":
                        text.append(part.text)
                    elif part.type == "thinking":
                        thinking += [t.text for t in part.thinking if getattr(t, "type", None) == "text"]
            for call in choice.delta.tool_calls or ():
                arguments = call.function.arguments
                calls.append((call.id, call.function.name, json.loads(arguments) if isinstance(arguments, str) else arguments))
            if choice.finish_reason:
                finish = FINISH_REASONS.get(choice.finish_reason, "stop")
    return {"text": "".join(text), "reasoning": "".join(thinking), "tool_calls": calls, "finish_reason": finish,
            "usage": usage}


def our_view(stream) -> Dict[str, Any]:
    usage = stream.usage
    return {
        "text": stream.text, "reasoning": stream.reasoning,
        "tool_calls": [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in stream.tool_calls],
        "finish_reason": stream.finish_reason,
        "usage": (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]),
    }


@DIFFERENTIAL
@given(chunks=mistral_streams(), variant=wire_variants(), points=cuts())
def test_mistral_sdk_and_streamcoord_agree(loopback, sdk, chunks, variant, points):
    events = [(None, json.dumps(c, ensure_ascii=False)) for c in chunks] + [(None, "[DONE]")]
    body = sse_bytes(events, variant, len(points))
    ours, _ = loopback.stream("mistral", cut(body, points), model="mistral-x")
    assert our_view(ours) == sdk_view(sdk, cut(body, points))
